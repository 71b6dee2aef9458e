//! Reading settings: the defaults as a TOML table, overlaid by the file, the `STRATA_*`
//! environment and flags, then deserialized, with a failure blamed on the one key whose
//! value is wrong.

use std::path::Path;

use serde::de::DeserializeOwned;

use super::{Config, ConfigError, ValueError};

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
}

/// Why `table` does not deserialize as `T`, blamed on the first key whose value alone,
/// put into `valid` (a table that deserializes), fails.
///
/// # Panics
/// If no value fails alone. Each field of a config deserializes on its own, so a table
/// that fails has such a value.
pub(super) fn blame<T: DeserializeOwned>(valid: &toml::Table, table: &toml::Table) -> ValueError {
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
pub(super) fn parse_value(text: &str) -> toml::Value {
    format!("v = {text}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut table| table.remove("v"))
        .filter(|value| !value.is_table() && !value.is_array())
        .unwrap_or_else(|| toml::Value::String(text.to_owned()))
}

#[cfg(test)]
pub(super) mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::{DurabilityPolicy, LogFormat, TopicConfig};

    pub(in crate::config) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
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
}
