//! Why configuration could not be loaded, in the terms the user typed.

use std::path::PathBuf;

use super::{COMMIT_DURABLE_WAIT_MS_MAX, ClusterConfigError, TopicConfigError};

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
    /// The cluster settings do not fit together.
    #[error("invalid configuration: {0}")]
    Cluster(#[from] ClusterConfigError),
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
