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

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use strata_protocol::limits::message_fits_frame;

mod topic;

pub use topic::{SEGMENT_BYTES_MIN, TopicConfig, TopicConfigError};

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

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Text for people, coloured only on a terminal and without `NO_COLOR`.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Every broker setting. Limits are named `<noun>_max` with units last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// Text or JSON log lines.
    pub log_format: LogFormat,

    /// Largest request frame accepted, in bytes; a larger length prefix closes the connection.
    pub frame_bytes_max: usize,
    /// Open client connections at once; further connections are closed at once.
    pub connections_max: usize,
    /// Requests read from one connection but not yet answered; reading pauses at the limit.
    pub connection_in_flight_requests_max: usize,
    /// A connection with no request for this long is closed.
    pub connection_idle_ms_max: u64,
    /// InitProducerId requests one connection may make per second (a token bucket that
    /// holds one second's worth); past it they are answered `LimitExceeded`. A producer
    /// asks once when it starts and once per restart of its sequences, so this only
    /// slows a client minting ids to flood the producer state.
    pub connection_producer_id_requests_per_second_max: u32,
    /// Longest a fetch may wait for `min_bytes` (a request's `max_wait_ms` is capped to it).
    pub fetch_wait_ms_max: u64,
    /// Largest fetch response, in bytes (a request's `max_bytes` is capped to it).
    pub fetch_response_bytes_max: usize,

    /// Request frame bytes held at once over all connections: a frame's bytes are reserved
    /// once its length prefix is read, before its body is buffered, and released when the
    /// request is done with them. While it is spent, connections stop reading and TCP
    /// pushes back. At least `frame_bytes_max`, so any frame fits.
    pub request_memory_bytes_max: usize,
    /// Reply bytes queued for connection writers at once over all connections: a reply's
    /// bytes (its response less the record bytes sent from segment files) are reserved
    /// before it is queued and released once it is written. While it is spent, the
    /// connections with a reply to queue stop reading and TCP pushes back. A separate
    /// budget from the request one, so connections that hold request frames and wait to
    /// queue a reply never wait on each other. At least `frame_bytes_max`.
    pub response_memory_bytes_max: usize,
    /// Once a request frame's bytes are reserved, a read that brings none of them for
    /// this long closes the connection, so stalled clients cannot hold the request budget.
    pub frame_read_timeout_ms: u64,
    /// A reply write that makes no progress for this long closes its connection: a client
    /// that stops reading loses its queued replies, its waiting requests and the segment
    /// files they held.
    pub write_timeout_ms: u64,
    /// Partitions one long-poll fetch (`max_wait_ms` above 0) may name; past it the fetch
    /// is answered `LimitExceeded`. The default is `partitions_max`'s, so a consumer of
    /// every partition on the broker can still wait in one fetch.
    pub fetch_wait_partitions_max: usize,
    /// Partitions the parked fetches of one connection may watch together; a fetch that
    /// would pass it is answered at once with what there is, without waiting. A consumer
    /// keeps one fetch in flight per broker, so the default equals the per-fetch one.
    pub connection_fetch_wait_partitions_max: usize,
    /// Partitions the parked fetches of all connections may watch together (each costs
    /// about 250 bytes while it waits); a fetch that would pass it is answered at once
    /// with what there is, as past the per-connection limit.
    pub fetch_wait_partitions_total_max: usize,
    /// Longest an `acks = all` produce waits for durability (its `timeout_ms` is capped).
    pub produce_timeout_ms_max: u64,
    /// How far ahead of the broker's clock a batch's max timestamp may be; a batch further
    /// ahead is refused, since one far-future timestamp would hold back time-based
    /// retention of every segment after it.
    pub message_timestamp_after_ms_max: u64,
    /// Partitions on this broker, over all topics.
    pub partitions_max: u32,
    /// Partitions of one topic.
    pub topic_partitions_max: u32,
    /// Topics named in one request, of any API (a Metadata or DescribeTopics request
    /// for every topic names none).
    pub request_topics_max: usize,
    /// Partition entries in one request, over all its topics (Produce, Fetch,
    /// ListOffsets, OffsetCommit, OffsetFetch, a heartbeat's owned partitions).
    pub request_partitions_max: usize,
    /// Group ids in one DescribeGroups or DeleteGroups request, and states in one
    /// ListGroups filter.
    pub request_groups_max: usize,
    /// How long a graceful shutdown waits for in-flight requests.
    pub shutdown_timeout_ms: u64,
    /// How often retention runs.
    pub retention_check_interval_ms: u64,

    /// Defaults for new topics, as flat keys (`retention_ms`, `segment_bytes`, ...) beside
    /// the broker's own: a topic's config is these with its overrides applied.
    #[serde(flatten)]
    pub topic_defaults: TopicConfig,

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
    /// The durability policy of the offsets log: an OffsetCommit is acknowledged once it
    /// covers the commit, as `acks = all` waits for a topic's. Its fsync interval under
    /// `interval` is the broker's `flush_interval_ms`.
    pub group_offsets_durability: DurabilityPolicy,
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
            log_format: LogFormat::Text,
            frame_bytes_max: strata_protocol::limits::FRAME_BYTES_MAX_DEFAULT,
            connections_max: 10_000,
            connection_in_flight_requests_max: 128,
            connection_idle_ms_max: 600_000,
            connection_producer_id_requests_per_second_max: 10,
            fetch_wait_ms_max: 30_000,
            fetch_response_bytes_max: strata_protocol::limits::FETCH_RESPONSE_BYTES_MAX_DEFAULT,
            request_memory_bytes_max: 256 << 20,
            response_memory_bytes_max: 256 << 20,
            frame_read_timeout_ms: 30_000,
            write_timeout_ms: 30_000,
            fetch_wait_partitions_max: 10_000,
            connection_fetch_wait_partitions_max: 10_000,
            fetch_wait_partitions_total_max: 1_000_000,
            produce_timeout_ms_max: 60_000,
            message_timestamp_after_ms_max: 3_600_000,
            partitions_max: 10_000,
            topic_partitions_max: 4_096,
            request_topics_max: 1_000,
            request_partitions_max: 10_000,
            request_groups_max: 1_000,
            shutdown_timeout_ms: 30_000,
            retention_check_interval_ms: 60_000,
            topic_defaults: TopicConfig::default(),
            group_session_timeout_ms: 45_000,
            group_heartbeat_interval_ms: 1_000,
            group_rebalance_timeout_ms: 60_000,
            group_members_max: 1_000,
            group_offsets_partitions: 8,
            group_offsets_durability: DurabilityPolicy::EveryBatch,
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
    /// The file is not valid TOML.
    #[error("invalid configuration: {path}: {source}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Where and why parsing stopped.
        source: toml::de::Error,
    },
    /// A `--set` flag is not `KEY=VALUE`.
    #[error("--set {setting}: expected KEY=VALUE")]
    Setting {
        /// The flag's value as given.
        setting: String,
    },
    /// A key is not a setting.
    #[error(
        "invalid configuration: unknown key '{key}'; the keys are {}",
        known.join(", ")
    )]
    UnknownKey {
        /// The key.
        key: String,
        /// Every key.
        known: Vec<String>,
    },
    /// A value has the wrong type or is not one of the allowed words.
    #[error("invalid configuration: {0}")]
    Value(ValueError),
    /// A limit that must be positive is 0.
    #[error("invalid configuration: {key} must be at least 1")]
    Zero {
        /// The key.
        key: &'static str,
    },
    /// Members would time out between two heartbeats.
    #[error(
        "invalid configuration: group_heartbeat_interval_ms must be below group_session_timeout_ms, or members would time out between heartbeats"
    )]
    HeartbeatNotBelowSession {
        /// `group_heartbeat_interval_ms`.
        heartbeat_interval_ms: u64,
        /// `group_session_timeout_ms`.
        session_timeout_ms: u64,
    },
    /// Under `group_offsets_durability = interval`, commits would time out before the
    /// offsets log is flushed.
    #[error(
        "invalid configuration: with group_offsets_durability = interval, flush_interval_ms ({flush_interval_ms}) must be below {COMMIT_DURABLE_WAIT_MS_MAX} / 2, or offset commits would time out waiting for the flush"
    )]
    OffsetsFlushTooSlow {
        /// `flush_interval_ms`.
        flush_interval_ms: u64,
    },
    /// A batch of the default `max_message_bytes` would not fit in a frame.
    #[error(
        "invalid configuration: max_message_bytes must be at least 1 KiB below frame_bytes_max, or no batch that size could be sent"
    )]
    MessageBytesNearFrame {
        /// `max_message_bytes`.
        max_message_bytes: u32,
        /// `frame_bytes_max`.
        frame_bytes_max: usize,
    },
    /// The request budget could not hold one largest frame.
    #[error(
        "invalid configuration: request_memory_bytes_max ({request_memory_bytes_max}) must be at least frame_bytes_max ({frame_bytes_max}), or a largest frame could never be read"
    )]
    RequestMemoryBelowFrame {
        /// `request_memory_bytes_max`.
        request_memory_bytes_max: usize,
        /// `frame_bytes_max`.
        frame_bytes_max: usize,
    },
    /// The response budget could not hold one largest reply.
    #[error(
        "invalid configuration: response_memory_bytes_max ({response_memory_bytes_max}) must be at least frame_bytes_max ({frame_bytes_max}), so a largest reply fits the budget"
    )]
    ResponseMemoryBelowFrame {
        /// `response_memory_bytes_max`.
        response_memory_bytes_max: usize,
        /// `frame_bytes_max`.
        frame_bytes_max: usize,
    },
    /// The topic defaults are not a valid topic config.
    #[error("invalid configuration: {0}")]
    TopicDefaults(#[from] TopicConfigError),
}

/// A value that does not fit its key, said in the terms the user typed:
/// `retention_ms: expected an integer, got "abc"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: expected {expected}, got {given}")]
pub struct ValueError {
    /// The key.
    pub key: String,
    /// What the key takes, in words.
    pub expected: String,
    /// The value as given, in TOML (strings quoted).
    pub given: String,
}

/// Why `table` does not deserialize as `T`, blamed on the first key whose value alone,
/// put into `valid` (a table that deserializes), fails.
///
/// # Panics
/// If no value fails alone. Each field of a config deserializes on its own, so a table
/// that fails has such a value.
fn blame<T: DeserializeOwned>(valid: &toml::Table, table: &toml::Table) -> ValueError {
    // Why `value` alone fails for `key`, if it does.
    let fails_alone = |key: &String, value: &toml::Value| {
        let mut alone = valid.clone();
        alone.insert(key.clone(), value.clone());
        let error = toml::Value::Table(alone).try_into::<T>().err()?;
        Some(error.message().to_owned())
    };
    let blamed = table.iter().find_map(|(key, value)| {
        if valid.get(key) == Some(value) {
            return None;
        }
        let mut message = fails_alone(key, value)?;
        // Given a number, an enum says only that it wants a string; given a string, it
        // lists its words.
        if !value.is_str() {
            let as_text = fails_alone(key, &toml::Value::String(value.to_string()));
            if let Some(words) = as_text.filter(|text| text.starts_with("unknown variant")) {
                message = words;
            }
        }
        Some(ValueError {
            key: key.clone(),
            expected: expectation(&message),
            given: value.to_string(),
        })
    });
    blamed.expect("a table that fails to deserialize has a value that fails alone")
}

/// What serde's message says was expected, in plain words: `an integer` for `i64`,
/// `one of every_batch, interval, never` for an enum.
fn expectation(message: &str) -> String {
    const ADDRESS: &str = "an address such as 127.0.0.1:9400";
    if message == "invalid socket address syntax" {
        return ADDRESS.to_owned();
    }
    let Some((_, expected)) = message.rsplit_once(", expected ") else {
        return format!("a valid value ({message})");
    };
    match expected {
        "i8" | "i16" | "i32" | "i64" => "an integer".to_owned(),
        "u64" | "usize" => "an integer of 0 or more".to_owned(),
        "u32" => format!("an integer from 0 to {}", u32::MAX),
        "u16" => format!("an integer from 0 to {}", u16::MAX),
        "a boolean" => "true or false".to_owned(),
        "socket address" => ADDRESS.to_owned(),
        other => other.replace('`', ""),
    }
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
        let mut table = Self::default_table();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            let file_table: toml::Table =
                toml::from_str(&text).map_err(|source| ConfigError::Syntax {
                    path: path.to_owned(),
                    source,
                })?;
            table.extend(file_table);
        }
        let known = Self::keys();
        let defaults = Self::default_table();
        for (name, value) in environment {
            let Some(key) = name.strip_prefix("STRATA_").map(str::to_ascii_lowercase) else {
                continue;
            };
            if known.contains(&key) {
                let value = parse_setting(defaults.get(&key), &value);
                table.insert(key, value);
            }
        }
        for (key, value) in flags {
            table.insert(key.clone(), parse_setting(defaults.get(key), value));
        }
        // Serde names no known keys for a struct with a flattened field, so check here.
        if let Some(key) = table.keys().find(|key| !known.contains(key)) {
            return Err(ConfigError::UnknownKey {
                key: key.clone(),
                known,
            });
        }
        let Ok(config) = toml::Value::Table(table.clone()).try_into::<Config>() else {
            return Err(ConfigError::Value(blame::<Config>(&defaults, &table)));
        };
        config.validate()?;
        Ok(config)
    }

    /// Every configuration key, sorted.
    pub fn keys() -> Vec<String> {
        let mut keys: Vec<String> = Self::default_table()
            .keys()
            .cloned()
            .chain(["advertised_listen".to_owned()])
            .collect();
        keys.sort();
        keys
    }

    /// The defaults as a table, which [`load`](Self::load) starts from: every key but
    /// `advertised_listen`, which has none. Deserializing needs every key, because serde
    /// fills no defaults into the flattened `topic_defaults`, and a topic's persisted
    /// config must keep failing when it lacks one.
    fn default_table() -> toml::Table {
        match toml::Value::try_from(Config::default()) {
            Ok(toml::Value::Table(table)) => table,
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
                "connection_producer_id_requests_per_second_max",
                self.connection_producer_id_requests_per_second_max.into(),
            ),
            (
                "fetch_response_bytes_max",
                self.fetch_response_bytes_max as u64,
            ),
            ("frame_read_timeout_ms", self.frame_read_timeout_ms),
            ("write_timeout_ms", self.write_timeout_ms),
            (
                "fetch_wait_partitions_max",
                self.fetch_wait_partitions_max as u64,
            ),
            (
                "connection_fetch_wait_partitions_max",
                self.connection_fetch_wait_partitions_max as u64,
            ),
            (
                "fetch_wait_partitions_total_max",
                self.fetch_wait_partitions_total_max as u64,
            ),
            (
                "message_timestamp_after_ms_max",
                self.message_timestamp_after_ms_max,
            ),
            ("partitions_max", self.partitions_max.into()),
            ("topic_partitions_max", self.topic_partitions_max.into()),
            ("request_topics_max", self.request_topics_max as u64),
            ("request_partitions_max", self.request_partitions_max as u64),
            ("request_groups_max", self.request_groups_max as u64),
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
        if let Some(&(key, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::Zero { key });
        }
        if self.group_heartbeat_interval_ms >= self.group_session_timeout_ms {
            return Err(ConfigError::HeartbeatNotBelowSession {
                heartbeat_interval_ms: self.group_heartbeat_interval_ms,
                session_timeout_ms: self.group_session_timeout_ms,
            });
        }
        let flush_interval_ms = self.topic_defaults.flush_interval_ms;
        if self.group_offsets_durability == DurabilityPolicy::Interval
            && flush_interval_ms >= COMMIT_DURABLE_WAIT_MS_MAX / 2
        {
            return Err(ConfigError::OffsetsFlushTooSlow { flush_interval_ms });
        }
        if self.request_memory_bytes_max < self.frame_bytes_max {
            return Err(ConfigError::RequestMemoryBelowFrame {
                request_memory_bytes_max: self.request_memory_bytes_max,
                frame_bytes_max: self.frame_bytes_max,
            });
        }
        if self.response_memory_bytes_max < self.frame_bytes_max {
            return Err(ConfigError::ResponseMemoryBelowFrame {
                response_memory_bytes_max: self.response_memory_bytes_max,
                frame_bytes_max: self.frame_bytes_max,
            });
        }
        let max_message_bytes = self.topic_defaults.max_message_bytes;
        if !message_fits_frame(max_message_bytes, self.frame_bytes_max) {
            return Err(ConfigError::MessageBytesNearFrame {
                max_message_bytes,
                frame_bytes_max: self.frame_bytes_max,
            });
        }
        Ok(self.topic_defaults.check()?)
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

    /// `frame_read_timeout_ms` as a duration.
    pub fn frame_read_timeout(&self) -> Duration {
        Duration::from_millis(self.frame_read_timeout_ms)
    }

    /// `write_timeout_ms` as a duration.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }
}

/// Reads a flag's or variable's value for a key whose default is `default`: as TOML, but
/// as the text itself for a key that takes text, so `--data-dir 2024` is a directory.
/// `advertised_listen` has no default and takes text.
fn parse_setting(default: Option<&toml::Value>, text: &str) -> toml::Value {
    match (default, parse_value(text)) {
        (None | Some(toml::Value::String(_)), parsed) if !parsed.is_str() => {
            toml::Value::String(text.to_owned())
        }
        (_, parsed) => parsed,
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

/// Longest an offset commit waits for the offsets log's fsync before it is answered
/// `RequestTimedOut`. An fsync takes milliseconds; this only bounds a stalled disk, and
/// `group_offsets_durability = interval` must flush well within it.
pub const COMMIT_DURABLE_WAIT_MS_MAX: u64 = 60_000;

#[cfg(test)]
mod tests {
    use strata_protocol::messages::ConfigEntry;

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
        assert_eq!(config.topic_defaults.segment_bytes, 2_000_000);
        assert_eq!(config.topic_defaults.retention_ms, 6);
        assert_eq!(config.node_id, 5);
        assert_eq!(
            config.topic_defaults.max_message_bytes,
            Config::default().topic_defaults.max_message_bytes
        );
    }

    #[test]
    fn the_request_budget_holds_at_least_one_largest_frame() {
        let defaults = Config::default();
        assert_eq!(defaults.request_memory_bytes_max, 256 << 20);
        assert!(defaults.request_memory_bytes_max >= defaults.frame_bytes_max);
        let environment = env(&[("STRATA_REQUEST_MEMORY_BYTES_MAX", "2097152")]);
        let flags = vec![("frame_bytes_max".to_owned(), "2097152".to_owned())];
        let config = Config::load(None, environment, &flags).unwrap();
        assert_eq!(config.request_memory_bytes_max, 2 << 20);
        let environment = env(&[("STRATA_REQUEST_MEMORY_BYTES_MAX", "1048576")]);
        let refused = Config::load(None, environment, &[]).unwrap_err();
        assert!(
            matches!(
                refused,
                ConfigError::RequestMemoryBelowFrame {
                    request_memory_bytes_max: 1_048_576,
                    frame_bytes_max: 16_777_216,
                }
            ),
            "{refused}"
        );
    }

    #[test]
    fn the_response_budget_holds_at_least_one_largest_reply() {
        let defaults = Config::default();
        assert_eq!(defaults.response_memory_bytes_max, 256 << 20);
        assert!(defaults.response_memory_bytes_max >= defaults.frame_bytes_max);
        let environment = env(&[("STRATA_RESPONSE_MEMORY_BYTES_MAX", "2097152")]);
        let flags = vec![
            ("frame_bytes_max".to_owned(), "2097152".to_owned()),
            ("request_memory_bytes_max".to_owned(), "2097152".to_owned()),
        ];
        let config = Config::load(None, environment, &flags).unwrap();
        assert_eq!(config.response_memory_bytes_max, 2 << 20);
        let flags = vec![("response_memory_bytes_max".to_owned(), "1048576".to_owned())];
        let refused = Config::load(None, [], &flags).unwrap_err();
        assert!(
            matches!(
                refused,
                ConfigError::ResponseMemoryBelowFrame {
                    response_memory_bytes_max: 1_048_576,
                    frame_bytes_max: 16_777_216,
                }
            ),
            "{refused}"
        );
        assert_eq!(
            refused.to_string(),
            "invalid configuration: response_memory_bytes_max (1048576) must be at least frame_bytes_max (16777216), so a largest reply fits the budget"
        );
    }

    #[test]
    fn connection_timeouts_and_fetch_wait_limits_are_positive_settings() {
        let defaults = Config::default();
        assert_eq!(defaults.write_timeout_ms, 30_000);
        assert_eq!(defaults.frame_read_timeout_ms, 30_000);
        assert_eq!(defaults.fetch_wait_partitions_max, 10_000);
        assert_eq!(defaults.connection_fetch_wait_partitions_max, 10_000);
        assert_eq!(defaults.fetch_wait_partitions_total_max, 1_000_000);
        let flags = vec![("write_timeout_ms".to_owned(), "250".to_owned())];
        let config = Config::load(None, [], &flags).unwrap();
        assert_eq!(config.write_timeout(), Duration::from_millis(250));
        for key in [
            "write_timeout_ms",
            "frame_read_timeout_ms",
            "fetch_wait_partitions_max",
            "connection_fetch_wait_partitions_max",
            "fetch_wait_partitions_total_max",
        ] {
            let flags = vec![(key.to_owned(), "0".to_owned())];
            let refused = Config::load(None, [], &flags).unwrap_err();
            assert!(
                matches!(refused, ConfigError::Zero { key: refused } if refused == key),
                "{refused}"
            );
        }
    }

    #[test]
    fn message_timestamp_after_ms_max_is_a_positive_setting() {
        assert_eq!(Config::default().message_timestamp_after_ms_max, 3_600_000);
        let environment = env(&[("STRATA_MESSAGE_TIMESTAMP_AFTER_MS_MAX", "60000")]);
        let config = Config::load(None, environment, &[]).unwrap();
        assert_eq!(config.message_timestamp_after_ms_max, 60_000);
        let flags = vec![("message_timestamp_after_ms_max".to_owned(), "0".to_owned())];
        let refused = Config::load(None, env(&[]), &flags);
        assert!(
            matches!(
                refused,
                Err(ConfigError::Zero {
                    key: "message_timestamp_after_ms_max"
                })
            ),
            "{refused:?}"
        );
    }

    #[test]
    fn request_fan_out_limits_are_positive_settings() {
        let defaults = Config::default();
        assert_eq!(defaults.request_topics_max, 1_000);
        // One request may name every partition a default broker hosts.
        assert_eq!(
            defaults.request_partitions_max,
            defaults.partitions_max as usize
        );
        assert_eq!(defaults.request_groups_max, 1_000);
        let environment = env(&[("STRATA_REQUEST_PARTITIONS_MAX", "20000")]);
        let flags = vec![("request_groups_max".to_owned(), "5".to_owned())];
        let config = Config::load(None, environment, &flags).unwrap();
        assert_eq!(config.request_partitions_max, 20_000);
        assert_eq!(config.request_groups_max, 5);
        for key in ["request_partitions_max", "request_groups_max"] {
            let flags = vec![(key.to_owned(), "0".to_owned())];
            let refused = Config::load(None, env(&[]), &flags);
            assert!(
                matches!(refused, Err(ConfigError::Zero { key: zero }) if zero == key),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn the_offsets_log_is_fsynced_every_batch_unless_set_otherwise() {
        assert_eq!(
            Config::default().group_offsets_durability,
            DurabilityPolicy::EveryBatch
        );
        let flags = vec![("group_offsets_durability".to_owned(), "never".to_owned())];
        let config = Config::load(None, [], &flags).unwrap();
        assert_eq!(config.group_offsets_durability, DurabilityPolicy::Never);
        assert_eq!(config.topic_defaults, TopicConfig::default());
    }

    #[test]
    fn an_offsets_log_flushed_on_an_interval_must_flush_before_commits_time_out() {
        let flags = |interval_ms: &str| {
            vec![
                ("group_offsets_durability".to_owned(), "interval".to_owned()),
                ("flush_interval_ms".to_owned(), interval_ms.to_owned()),
            ]
        };
        assert!(Config::load(None, [], &flags("1000")).is_ok());
        let error = Config::load(None, [], &flags("30000")).unwrap_err();
        assert!(
            matches!(
                error,
                ConfigError::OffsetsFlushTooSlow {
                    flush_interval_ms: 30_000
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn topic_defaults_are_flat_keys_of_the_file_the_environment_and_flags() {
        let keys = Config::keys();
        for entry in TopicConfig::default().entries() {
            assert!(keys.contains(&entry.key), "{} is not a key", entry.key);
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("broker.toml");
        std::fs::write(&file, "segment_ms = 1234\n").unwrap();
        let environment = env(&[("STRATA_FLUSH_INTERVAL_MS", "77")]);
        let flags = vec![("durability".to_owned(), "every_batch".to_owned())];
        let config = Config::load(Some(&file), environment, &flags).unwrap();
        let expected = TopicConfig {
            segment_ms: 1234,
            flush_interval_ms: 77,
            durability: DurabilityPolicy::EveryBatch,
            ..TopicConfig::default()
        };
        assert_eq!(config.topic_defaults, expected);
        let invalid = vec![("segment_bytes".to_owned(), "10".to_owned())];
        assert_eq!(
            Config::load(None, [], &invalid).unwrap_err().to_string(),
            "invalid configuration: segment_bytes must be between 16384 and 2147483648"
        );
    }

    #[test]
    fn a_persisted_topic_config_needs_every_key() {
        assert!(toml::from_str::<TopicConfig>("retention_ms = 1\n").is_err());
        let text = toml::to_string(&TopicConfig::default()).unwrap();
        assert_eq!(
            toml::from_str::<TopicConfig>(&text).unwrap(),
            TopicConfig::default()
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("broker.toml");
        std::fs::write(&file, "segmnet_bytes = 1\n").unwrap();
        let error = Config::load(Some(&file), [], &[]).unwrap_err().to_string();
        assert!(
            error.starts_with(
                "invalid configuration: unknown key 'segmnet_bytes'; the keys are advertised_listen, "
            ),
            "{error}"
        );
        assert!(error.contains(", connection_idle_ms_max, "), "{error}");
        assert!(error.contains(", segment_bytes, "), "{error}");
        let flags = vec![("frame_bytes_max".to_owned(), "0".to_owned())];
        assert!(
            Config::load(None, [], &flags)
                .unwrap_err()
                .to_string()
                .contains("frame_bytes_max")
        );
    }

    #[test]
    fn a_bad_value_is_named_by_its_key_from_flags_environment_and_file() {
        let load = |file: &str, environment: &[(&str, &str)], flags: &[(&str, &str)]| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("broker.toml");
            std::fs::write(&path, file).unwrap();
            let flags: Vec<Override> = flags
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect();
            Config::load(Some(&path), env(environment), &flags)
                .unwrap_err()
                .to_string()
        };
        let cases = [
            (
                load("", &[], &[("retention_ms", "abc")]),
                "retention_ms: expected an integer, got \"abc\"",
            ),
            (
                load("", &[("STRATA_SEGMENT_BYTES", "-5")], &[]),
                "segment_bytes: expected an integer of 0 or more, got -5",
            ),
            (
                load("node_id = 5000000000\n", &[], &[]),
                "node_id: expected an integer from 0 to 4294967295, got 5000000000",
            ),
            (
                load("durability = \"sometimes\"\n", &[], &[]),
                "durability: expected one of every_batch, interval, never, got \"sometimes\"",
            ),
            (
                load("", &[], &[("log_format", "xml")]),
                "log_format: expected text or json, got \"xml\"",
            ),
            (
                load("", &[], &[("listen", "localhost")]),
                "listen: expected an address such as 127.0.0.1:9400, got \"localhost\"",
            ),
        ];
        for (error, reason) in cases {
            assert_eq!(error, format!("invalid configuration: {reason}"));
        }
    }

    #[test]
    fn a_key_that_takes_text_takes_a_flag_that_looks_like_a_number() {
        let flags = vec![
            ("data_dir".to_owned(), "2024".to_owned()),
            ("log_format".to_owned(), "\"json\"".to_owned()),
        ];
        let config = Config::load(None, [], &flags).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("2024"));
        assert_eq!(config.log_format, LogFormat::Json);
    }

    #[test]
    fn topic_overrides_are_validated() {
        let defaults = Config::default().topic_defaults;
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
            "unknown topic config 'retention'; the topic configs are durability, flush_interval_ms, max_message_bytes, retention_bytes, retention_ms, segment_bytes, segment_ms"
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
    }
}
