//! `strata topic`: create, list, describe, alter and delete topics through `Admin`.

use std::collections::BTreeMap;

use clap::Subcommand;
use serde::Serialize;
use strata_client::protocol::ErrorCode;
use strata_client::{Admin, ClientConfig, NewTopic, TopicDetails};

use crate::Output;
use crate::error::CliError;
use crate::output::{Table, node_list, print, print_json};

/// The `topic` subcommands.
#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        /// The topic's name: 1 to 249 characters from [A-Za-z0-9._-].
        name: String,
        /// How many partitions.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        partitions: u32,
        /// Copies of each partition.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
        replication_factor: u16,
        /// A topic setting overriding the broker's default, as key=value; repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_config)]
        configs: Vec<(String, String)>,
        /// Succeed without doing anything if the topic exists (its settings are not
        /// compared); a note on stderr says so.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// List every topic with its partition count.
    List,
    /// Show a topic's configs and partitions: leader, replicas, in-sync replicas, offsets
    /// and size on disk.
    Describe {
        /// The topic.
        name: String,
    },
    /// Grow a topic to more partitions and/or change its settings.
    #[command(group = clap::ArgGroup::new("change").required(true).multiple(true).args(["partitions", "configs"]))]
    Alter {
        /// The topic.
        name: String,
        /// The new total partition count; partitions can be added, never removed.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        partitions: Option<u32>,
        /// A setting to change on the live topic, as key=value; repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_config)]
        configs: Vec<(String, String)>,
    },
    /// Delete a topic and all its records.
    Delete {
        /// The topic.
        name: String,
        /// Succeed without doing anything if the topic does not exist; a note on stderr
        /// says so.
        #[arg(long)]
        if_exists: bool,
    },
}

/// Runs one `topic` subcommand.
///
/// # Errors
/// Unknown or existing topics, rejected settings, unreachable brokers.
pub async fn run(bootstrap: &str, output: Output, command: TopicCommand) -> Result<(), CliError> {
    let admin = Admin::new(ClientConfig::new(bootstrap))?;
    match command {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
            if_not_exists,
        } => {
            let topic = NewTopic {
                configs,
                ..NewTopic::new(&name, partitions).replication_factor(replication_factor)
            };
            match admin.create_topic(topic).await {
                Ok(()) => {
                    let detail = format!(
                        "with {} and replication factor {replication_factor}",
                        partition_count(partitions)
                    );
                    report(output, &name, "created", &detail)
                }
                Err(error) => match CliError::from_client(error, &name) {
                    CliError::TopicExists(_) if if_not_exists => {
                        unchanged(output, &name, "already exists")
                    }
                    error => Err(error),
                },
            }
        }
        TopicCommand::List => list(&admin, output).await,
        TopicCommand::Describe { name } => describe(&admin, output, &name).await,
        TopicCommand::Alter {
            name,
            partitions,
            configs,
        } => alter(&admin, output, &name, partitions, &configs).await,
        TopicCommand::Delete { name, if_exists } => match admin.delete_topic(&name).await {
            Ok(()) => report(output, &name, "deleted", ""),
            Err(error) => match CliError::from_client(error, &name) {
                CliError::UnknownTopic(_) if if_exists => {
                    unchanged(output, &name, "does not exist")
                }
                error => Err(error),
            },
        },
    }
}

/// "1 partition", "3 partitions".
fn partition_count(count: u32) -> String {
    if count == 1 {
        "1 partition".into()
    } else {
        format!("{count} partitions")
    }
}

/// `key=value`, split at the first `=`.
fn parse_config(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got '{text}'")),
    }
}

/// `--if-not-exists` or `--if-exists` found nothing to do: a note on stderr, and for a
/// script the result `unchanged` on stdout.
fn unchanged(output: Output, topic: &str, why: &str) -> Result<(), CliError> {
    eprintln!("note: topic '{topic}' {why}; nothing was done");
    match output {
        Output::Json => report(output, topic, "unchanged", ""),
        Output::Table => Ok(()),
    }
}

/// One line for a person, or `{"topic": .., "result": ..}` for a script.
fn report(output: Output, topic: &str, result: &str, detail: &str) -> Result<(), CliError> {
    #[derive(Serialize)]
    struct Done<'a> {
        topic: &'a str,
        result: &'a str,
    }
    match output {
        Output::Json => print_json(&Done { topic, result }),
        Output::Table if detail.is_empty() => print(&format!("{result} topic '{topic}'\n")),
        Output::Table => print(&format!("{result} topic '{topic}' {detail}\n")),
    }
}

async fn list(admin: &Admin, output: Output) -> Result<(), CliError> {
    #[derive(Serialize)]
    struct Listed<'a> {
        name: &'a str,
        partitions: usize,
    }
    let metadata = admin.cluster_metadata().await?;
    let topics: Vec<Listed<'_>> = metadata
        .topics
        .iter()
        .map(|topic| Listed {
            name: &topic.name,
            partitions: topic.partitions.len(),
        })
        .collect();
    match output {
        Output::Json => print_json(&topics),
        Output::Table => {
            let mut table = Table::new(&["NAME", "PARTITIONS"]);
            for topic in &topics {
                table.row(vec![topic.name.to_owned(), topic.partitions.to_string()]);
            }
            print(&table.render())
        }
    }
}

async fn alter(
    admin: &Admin,
    output: Output,
    name: &str,
    partitions: Option<u32>,
    configs: &[(String, String)],
) -> Result<(), CliError> {
    let mut changes = Vec::new();
    if !configs.is_empty() {
        let pairs: Vec<(&str, &str)> = configs
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        admin
            .alter_topic_configs(name, &pairs)
            .await
            .map_err(|error| CliError::from_client(error, name))?;
        let keys: Vec<&str> = configs.iter().map(|(key, _)| key.as_str()).collect();
        changes.push(format!("set {}", keys.join(", ")));
    }
    if let Some(partitions) = partitions {
        admin
            .add_partitions(name, partitions)
            .await
            .map_err(|error| CliError::from_client(error, name))?;
        changes.push(format!("now has {}", partition_count(partitions)));
    }
    report(output, name, "altered", &changes.join("; "))
}

async fn describe(admin: &Admin, output: Output, name: &str) -> Result<(), CliError> {
    let (_, details) = admin
        .describe_topics(Some(&[name]))
        .await?
        .pop()
        .ok_or_else(|| CliError::Rejected {
            code: ErrorCode::Unknown,
            detail: format!("the broker sent no description of topic '{name}'"),
        })?;
    let details = details.map_err(|error| CliError::from_client(error, name))?;
    match output {
        Output::Json => print_json(&DescribedJson::from(&details)),
        Output::Table => print(&describe_table(&details)),
    }
}

/// `topic describe --output json`: every effective config in `configs`, and again in
/// `overrides` those the topic overrides, each a number where its text is an integer.
#[derive(Serialize)]
struct DescribedJson<'a> {
    name: &'a str,
    configs: BTreeMap<&'a str, serde_json::Value>,
    overrides: BTreeMap<&'a str, serde_json::Value>,
    partitions: Vec<PartitionJson<'a>>,
}

/// A config value for JSON: configs travel as text, but a script should get
/// `"retention_ms": 86400000`, not `"86400000"`.
fn config_json(value: &str) -> serde_json::Value {
    if let Ok(number) = value.parse::<i64>() {
        number.into()
    } else if let Ok(number) = value.parse::<u64>() {
        number.into()
    } else {
        value.into()
    }
}

/// Whether the topic overrides config `key`.
fn overrides(details: &TopicDetails, key: &str) -> bool {
    details
        .overridden_keys
        .binary_search_by(|overridden| overridden.as_str().cmp(key))
        .is_ok()
}

#[derive(Serialize)]
struct PartitionJson<'a> {
    partition: u32,
    leader: Option<u32>,
    leader_epoch: u32,
    replicas: &'a [u32],
    in_sync_replicas: &'a [u32],
    log_start_offset: u64,
    high_watermark: u64,
    log_end_offset: u64,
    size_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    offline: Option<&'a str>,
}

impl<'a> From<&'a TopicDetails> for DescribedJson<'a> {
    fn from(details: &'a TopicDetails) -> Self {
        Self {
            name: &details.name,
            configs: details
                .configs
                .iter()
                .map(|(key, value)| (key.as_str(), config_json(value)))
                .collect(),
            overrides: details
                .configs
                .iter()
                .filter(|(key, _)| overrides(details, key))
                .map(|(key, value)| (key.as_str(), config_json(value)))
                .collect(),
            partitions: details
                .partitions
                .iter()
                .map(|partition| PartitionJson {
                    partition: partition.partition,
                    leader: partition.leader,
                    leader_epoch: partition.leader_epoch,
                    replicas: &partition.replicas,
                    in_sync_replicas: &partition.in_sync_replicas,
                    log_start_offset: partition.log_start_offset,
                    high_watermark: partition.high_watermark,
                    log_end_offset: partition.log_end_offset,
                    size_bytes: partition.size_bytes,
                    offline: partition.offline.as_deref(),
                })
                .collect(),
        }
    }
}

fn describe_table(details: &TopicDetails) -> String {
    let mut table = Table::new(&[
        "PARTITION",
        "LEADER",
        "EPOCH",
        "REPLICAS",
        "IN-SYNC",
        "LOG-START-OFFSET",
        "HIGH-WATERMARK",
        "LOG-END-OFFSET",
        "SIZE-BYTES",
    ]);
    for partition in &details.partitions {
        table.row(vec![
            partition.partition.to_string(),
            partition
                .leader
                .map_or_else(|| "-".to_owned(), |leader| leader.to_string()),
            partition.leader_epoch.to_string(),
            node_list(&partition.replicas),
            node_list(&partition.in_sync_replicas),
            partition.log_start_offset.to_string(),
            partition.high_watermark.to_string(),
            partition.log_end_offset.to_string(),
            partition.size_bytes.to_string(),
        ]);
    }
    // SOURCE as in `rpk topic describe` and `kafka-configs.sh --describe`.
    let mut configs = Table::new(&["CONFIG", "VALUE", "SOURCE"]);
    for (key, value) in &details.configs {
        let source = if overrides(details, key) {
            "topic"
        } else {
            "default"
        };
        configs.row(vec![key.clone(), value.clone(), source.into()]);
    }
    let offline: String = details
        .partitions
        .iter()
        .filter_map(|partition| {
            let reason = partition.offline.as_deref()?;
            Some(format!(
                "partition {} is OFFLINE: {reason}\n",
                partition.partition
            ))
        })
        .collect();
    format!(
        "topic '{}' ({})\n{}{offline}\n{}",
        details.name,
        partition_count(u32::try_from(details.partitions.len()).unwrap_or(u32::MAX)),
        table.render(),
        configs.render()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_split_at_the_first_equals_sign() {
        assert_eq!(
            parse_config("retention_ms=1=2"),
            Ok(("retention_ms".into(), "1=2".into()))
        );
        assert_eq!(
            parse_config("retention_ms="),
            Ok(("retention_ms".into(), String::new()))
        );
        assert!(parse_config("retention_ms").is_err());
        assert!(parse_config("=1").is_err());
    }

    fn orders() -> TopicDetails {
        TopicDetails {
            name: "orders".into(),
            configs: vec![
                ("durability".into(), "never".into()),
                ("retention_bytes".into(), "-1".into()),
                ("retention_ms".into(), "86400000".into()),
            ],
            overridden_keys: vec!["retention_ms".into()],
            partitions: Vec::new(),
        }
    }

    #[test]
    fn json_configs_are_numbers_where_they_are_integers() {
        let details = orders();
        let json = serde_json::to_value(DescribedJson::from(&details)).expect("serializes");
        assert_eq!(
            json["configs"],
            serde_json::json!({"durability": "never", "retention_bytes": -1, "retention_ms": 86400000})
        );
        assert_eq!(
            json["overrides"],
            serde_json::json!({"retention_ms": 86400000})
        );
        assert_eq!(
            config_json("18446744073709551615"),
            serde_json::json!(u64::MAX)
        );
        assert_eq!(config_json("1.5"), serde_json::json!("1.5"));
    }

    #[test]
    fn the_table_marks_what_the_topic_overrides() {
        let text = describe_table(&orders());
        assert!(
            text.ends_with(
                "CONFIG           VALUE     SOURCE\n\
                 durability       never     default\n\
                 retention_bytes  -1        default\n\
                 retention_ms     86400000  topic\n"
            ),
            "{text}"
        );
    }
}
