//! Checks that the settings make sense together, before anything is opened.

use strata_protocol::limits::message_fits_frame;

use super::{COMMIT_DURABLE_WAIT_MS_MAX, Config, ConfigError, DurabilityPolicy};

impl Config {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
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
        self.validate_cluster()?;
        Ok(self.topic_defaults.check()?)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::TopicConfig;
    use crate::config::load::tests::env;

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
}
