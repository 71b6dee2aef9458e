//! `strata group`: list, describe, reset the offsets of, and delete consumer groups
//! through `Admin` (compare `kafka-consumer-groups.sh`).

use std::collections::BTreeMap;

use clap::Subcommand;
use serde::Serialize;
use strata_client::{
    Admin, ClientConfig, Error as ClientError, GroupDescription, GroupMemberDescription,
    GroupPartitionOffset, OffsetSpec, TopicPartition,
};

use crate::Output;
use crate::error::CliError;
use crate::output::{Table, print, print_json};

/// The `group` subcommands.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List every consumer group with its state and member count.
    List,
    /// Show a group's state, epochs and members with their partitions, and per
    /// partition the committed offset, high watermark, lag and owner.
    Describe {
        /// The group id: 1 to 255 bytes.
        #[arg(value_parser = crate::parse_group_id)]
        group: String,
    },
    /// Plan, or with --execute set, the group's committed offsets for every partition
    /// of a topic, like `kafka-consumer-groups.sh --reset-offsets`.
    ///
    /// Without --execute this is a dry run: it prints each partition's current
    /// committed offset and the offset it would get, changes nothing and exits 0; if
    /// the group has live members it also warns on stderr, since --execute would be
    /// refused. With --execute the group must have no live members (stop its consumers
    /// first) and the new offsets are committed.
    #[command(group = clap::ArgGroup::new("to").required(true).args(["to_earliest", "to_latest", "to_offset", "to_timestamp"]))]
    ResetOffsets {
        /// The group id: 1 to 255 bytes.
        #[arg(value_parser = crate::parse_group_id)]
        group: String,
        /// The topic whose partitions are reset.
        #[arg(long)]
        topic: String,
        /// Each partition's oldest retained record.
        #[arg(long)]
        to_earliest: bool,
        /// Each partition's high watermark: skip everything produced so far.
        #[arg(long)]
        to_latest: bool,
        /// This offset in every partition, moved into [log start, high watermark].
        #[arg(long, value_name = "OFFSET")]
        to_offset: Option<u64>,
        /// Each partition's first record at or after this time (ms since the Unix
        /// epoch), or its high watermark if none is that recent.
        #[arg(long, value_name = "MS", value_parser = clap::value_parser!(i64).range(0..))]
        to_timestamp: Option<i64>,
        /// Apply the reset; without it only the plan is printed (a dry run).
        #[arg(long)]
        execute: bool,
    },
    /// Delete a group without members, and its committed offsets.
    Delete {
        /// The group id: 1 to 255 bytes.
        #[arg(value_parser = crate::parse_group_id)]
        group: String,
    },
}

/// Where `reset-offsets` moves the partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResetTo {
    Earliest,
    Latest,
    Offset(u64),
    Timestamp(i64),
}

/// Runs one `group` subcommand.
///
/// # Errors
/// Unknown groups or topics, groups with live members, unreachable brokers.
pub async fn run(bootstrap: &str, output: Output, command: GroupCommand) -> Result<(), CliError> {
    let admin = Admin::new(ClientConfig::new(bootstrap))?;
    match command {
        GroupCommand::List => list(&admin, output).await,
        GroupCommand::Describe { group } => {
            let description = admin
                .describe_group(&group)
                .await
                .map_err(|error| CliError::from_group(error, &group))?;
            match output {
                Output::Json => print_json(&DescribedJson::from(&description)),
                Output::Table => print(&describe_table(&description)),
            }
        }
        GroupCommand::ResetOffsets {
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
            to_timestamp,
            execute,
        } => {
            let to = match (to_earliest, to_latest, to_offset, to_timestamp) {
                (true, _, _, _) => ResetTo::Earliest,
                (_, true, _, _) => ResetTo::Latest,
                (_, _, Some(offset), _) => ResetTo::Offset(offset),
                (_, _, _, Some(timestamp)) => ResetTo::Timestamp(timestamp),
                (false, false, None, None) => unreachable!("clap requires one --to-* flag"),
            };
            reset_offsets(&admin, output, &group, &topic, to, execute).await
        }
        GroupCommand::Delete { group } => {
            admin
                .delete_group(&group)
                .await
                .map_err(|error| CliError::from_group(error, &group))?;
            match output {
                Output::Json => {
                    print_json(&serde_json::json!({"group": group, "result": "deleted"}))
                }
                Output::Table => print(&format!("deleted group '{group}'\n")),
            }
        }
    }
}

async fn list(admin: &Admin, output: Output) -> Result<(), CliError> {
    #[derive(Serialize)]
    struct Listed<'a> {
        group: &'a str,
        state: &'a str,
        members: u32,
    }
    let groups = admin.list_groups().await?;
    let listed: Vec<Listed<'_>> = groups
        .iter()
        .map(|group| Listed {
            group: &group.group_id,
            state: &group.state,
            members: group.member_count,
        })
        .collect();
    match output {
        Output::Json => print_json(&listed),
        Output::Table => {
            let mut table = Table::new(&["GROUP", "STATE", "MEMBERS"]);
            for group in &listed {
                table.row(vec![
                    group.group.to_owned(),
                    group.state.to_owned(),
                    group.members.to_string(),
                ]);
            }
            print(&table.render())
        }
    }
}

/// Resolves the target offset of every partition of `topic` and prints the plan next to
/// the group's committed offsets; with `execute`, commits them as the group's offsets.
async fn reset_offsets(
    admin: &Admin,
    output: Output,
    group: &str,
    topic: &str,
    to: ResetTo,
    execute: bool,
) -> Result<(), CliError> {
    let group_error = |error| CliError::from_group(error, group);
    let offsets = planned_offsets(admin, topic, to).await?;
    let current: BTreeMap<TopicPartition, u64> = admin
        .group_offsets(group)
        .await
        .map_err(group_error)?
        .into_iter()
        .collect();
    if execute {
        admin
            .reset_group_offsets(group, &offsets)
            .await
            .map_err(group_error)?;
    } else {
        let members = match admin.describe_group(group).await {
            Ok(description) => description.members.len(),
            Err(ClientError::UnknownGroup { .. }) => 0,
            Err(error) => return Err(group_error(error)),
        };
        if members > 0 {
            eprintln!(
                "warning: group '{group}' has live members; --execute will be refused until \
                 its consumers stop"
            );
        }
    }
    let planned: Vec<PlannedJson<'_>> = offsets
        .iter()
        .map(|(tp, offset)| PlannedJson {
            topic: &tp.topic,
            partition: tp.partition,
            current_offset: current.get(tp).copied(),
            new_offset: *offset,
        })
        .collect();
    match output {
        Output::Json => print_json(&serde_json::json!({
            "group": group,
            "executed": execute,
            "offsets": planned,
        })),
        Output::Table => print(&reset_table(group, &planned, execute)),
    }
}

/// One partition of a `reset-offsets` plan.
#[derive(Serialize)]
struct PlannedJson<'a> {
    topic: &'a str,
    partition: u32,
    /// The group's committed offset now; `None` if it has none.
    current_offset: Option<u64>,
    new_offset: u64,
}

fn reset_table(group: &str, planned: &[PlannedJson<'_>], executed: bool) -> String {
    let mut table = Table::new(&["TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"]);
    for partition in planned {
        table.row(vec![
            partition.topic.to_owned(),
            partition.partition.to_string(),
            or_dash(partition.current_offset),
            partition.new_offset.to_string(),
        ]);
    }
    let heading = if executed {
        format!("reset group '{group}'")
    } else {
        format!("dry run: add --execute to apply (group '{group}' is unchanged)")
    };
    format!("{heading}\n{}", table.render())
}

/// The offset every partition of `topic` moves to.
async fn planned_offsets(
    admin: &Admin,
    topic: &str,
    to: ResetTo,
) -> Result<Vec<(TopicPartition, u64)>, CliError> {
    let topic_error = |error| CliError::from_client(error, topic);
    let description = admin.describe_topic(topic).await.map_err(topic_error)?;
    let partitions: Vec<TopicPartition> = description
        .partitions
        .iter()
        .map(|partition| TopicPartition::new(topic, partition.partition))
        .collect();
    let lookup = |spec| admin.list_offsets(&partitions, spec);
    Ok(match to {
        ResetTo::Earliest => resolved(lookup(OffsetSpec::Earliest).await.map_err(topic_error)?),
        ResetTo::Latest => resolved(lookup(OffsetSpec::Latest).await.map_err(topic_error)?),
        ResetTo::Offset(offset) => {
            let starts = resolved(lookup(OffsetSpec::Earliest).await.map_err(topic_error)?);
            let ends = resolved(lookup(OffsetSpec::Latest).await.map_err(topic_error)?);
            clamp_offsets(offset, &starts, &ends)
        }
        ResetTo::Timestamp(timestamp) => {
            let found = lookup(OffsetSpec::Timestamp(timestamp))
                .await
                .map_err(topic_error)?;
            let ends = resolved(lookup(OffsetSpec::Latest).await.map_err(topic_error)?);
            found
                .into_iter()
                .zip(ends)
                .map(|((tp, offset), (_, end))| (tp, offset.unwrap_or(end)))
                .collect()
        }
    })
}

/// Offsets from a lookup that always finds one (log start, high watermark).
fn resolved(found: Vec<(TopicPartition, Option<u64>)>) -> Vec<(TopicPartition, u64)> {
    found
        .into_iter()
        .map(|(tp, offset)| (tp, offset.unwrap_or(0)))
        .collect()
}

/// `offset` moved into each partition's `[log start, high watermark]`, as
/// `kafka-consumer-groups.sh` does. `starts` and `ends` are sorted alike.
fn clamp_offsets(
    offset: u64,
    starts: &[(TopicPartition, u64)],
    ends: &[(TopicPartition, u64)],
) -> Vec<(TopicPartition, u64)> {
    starts
        .iter()
        .zip(ends)
        .map(|((tp, start), (_, end))| (tp.clone(), offset.clamp(*start, (*end).max(*start))))
        .collect()
}

/// Partitions as `orders:0,1 payments:2`, or `-` for none.
fn partition_list(partitions: &[TopicPartition]) -> String {
    if partitions.is_empty() {
        return "-".into();
    }
    let mut topics: Vec<(String, Vec<String>)> = Vec::new();
    for tp in partitions {
        match topics.last_mut() {
            Some((topic, indexes)) if *topic == tp.topic => indexes.push(tp.partition.to_string()),
            _ => topics.push((tp.topic.clone(), vec![tp.partition.to_string()])),
        }
    }
    topics
        .into_iter()
        .map(|(topic, indexes)| format!("{topic}:{}", indexes.join(",")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| value.to_string())
}

fn describe_table(group: &GroupDescription) -> String {
    let mut members = Table::new(&[
        "MEMBER-ID",
        "INSTANCE-ID",
        "CLIENT-ID",
        "HOST",
        "EPOCH",
        "ASSIGNMENT",
        "PENDING-REVOCATION",
        "TARGET",
    ]);
    for member in &group.members {
        members.row(vec![
            member.member_id.clone(),
            or_dash(member.instance_id.as_ref()),
            member.client_id.clone(),
            member.client_host.clone(),
            member.member_epoch.to_string(),
            partition_list(&member.assignment),
            partition_list(&member.pending_revocation),
            partition_list(&member.target_assignment),
        ]);
    }
    let mut offsets = Table::new(&[
        "TOPIC",
        "PARTITION",
        "COMMITTED",
        "HIGH-WATERMARK",
        "LAG",
        "OWNER",
    ]);
    for offset in &group.offsets {
        offsets.row(vec![
            offset.topic.clone(),
            offset.partition.to_string(),
            or_dash(offset.committed),
            or_dash(offset.high_watermark),
            or_dash(offset.lag),
            or_dash(offset.owner.as_ref()),
        ]);
    }
    format!(
        "group '{}': {}, group epoch {}, assignment epoch {}, assignor {}, {} member{}\n{}\n{}",
        group.group_id,
        group.state,
        group.group_epoch,
        group.assignment_epoch,
        group.assignor,
        group.members.len(),
        if group.members.len() == 1 { "" } else { "s" },
        members.render(),
        offsets.render()
    )
}

/// `group describe --output json`.
#[derive(Serialize)]
struct DescribedJson<'a> {
    group: &'a str,
    state: &'a str,
    group_epoch: i32,
    assignment_epoch: i32,
    assignor: &'a str,
    members: Vec<MemberJson<'a>>,
    offsets: Vec<OffsetJson<'a>>,
}

#[derive(Serialize)]
struct MemberJson<'a> {
    member_id: &'a str,
    instance_id: Option<&'a str>,
    client_id: &'a str,
    client_host: &'a str,
    member_epoch: i32,
    subscribed_topics: &'a [String],
    assignment: Vec<PartitionJson<'a>>,
    pending_revocation: Vec<PartitionJson<'a>>,
    target_assignment: Vec<PartitionJson<'a>>,
}

#[derive(Serialize)]
struct PartitionJson<'a> {
    topic: &'a str,
    partition: u32,
}

#[derive(Serialize)]
struct OffsetJson<'a> {
    topic: &'a str,
    partition: u32,
    committed: Option<u64>,
    high_watermark: Option<u64>,
    lag: Option<u64>,
    owner: Option<&'a str>,
}

fn partitions_json(partitions: &[TopicPartition]) -> Vec<PartitionJson<'_>> {
    partitions
        .iter()
        .map(|tp| PartitionJson {
            topic: &tp.topic,
            partition: tp.partition,
        })
        .collect()
}

impl<'a> From<&'a GroupMemberDescription> for MemberJson<'a> {
    fn from(member: &'a GroupMemberDescription) -> Self {
        Self {
            member_id: &member.member_id,
            instance_id: member.instance_id.as_deref(),
            client_id: &member.client_id,
            client_host: &member.client_host,
            member_epoch: member.member_epoch,
            subscribed_topics: &member.subscribed_topics,
            assignment: partitions_json(&member.assignment),
            pending_revocation: partitions_json(&member.pending_revocation),
            target_assignment: partitions_json(&member.target_assignment),
        }
    }
}

impl<'a> From<&'a GroupPartitionOffset> for OffsetJson<'a> {
    fn from(offset: &'a GroupPartitionOffset) -> Self {
        Self {
            topic: &offset.topic,
            partition: offset.partition,
            committed: offset.committed,
            high_watermark: offset.high_watermark,
            lag: offset.lag,
            owner: offset.owner.as_deref(),
        }
    }
}

impl<'a> From<&'a GroupDescription> for DescribedJson<'a> {
    fn from(group: &'a GroupDescription) -> Self {
        Self {
            group: &group.group_id,
            state: &group.state,
            group_epoch: group.group_epoch,
            assignment_epoch: group.assignment_epoch,
            assignor: &group.assignor,
            members: group.members.iter().map(MemberJson::from).collect(),
            offsets: group.offsets.iter().map(OffsetJson::from).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(subcommand)]
        command: GroupCommand,
    }

    fn parse(argv: &[&str]) -> Result<GroupCommand, clap::Error> {
        let mut full = vec!["group"];
        full.extend_from_slice(argv);
        Wrapper::try_parse_from(full).map(|wrapper| wrapper.command)
    }

    #[test]
    fn reset_offsets_needs_exactly_one_target() {
        let command = parse(&["reset-offsets", "g", "--topic", "t", "--to-offset", "7"]).unwrap();
        assert!(matches!(
            command,
            GroupCommand::ResetOffsets {
                to_offset: Some(7),
                ..
            }
        ));
        let missing = parse(&["reset-offsets", "g", "--topic", "t"]).unwrap_err();
        assert_eq!(missing.exit_code(), 2);
        let both = parse(&[
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to-earliest",
            "--to-latest",
        ]);
        assert_eq!(both.unwrap_err().exit_code(), 2);
        assert!(
            parse(&["reset-offsets", "g", "--to-earliest"]).is_err(),
            "--topic is required"
        );
        assert!(parse(&["reset-offsets", "g", "--topic", "t", "--to-timestamp", "-5"]).is_err());
    }

    #[test]
    fn reset_offsets_is_a_dry_run_without_execute() {
        let dry = parse(&["reset-offsets", "g", "--topic", "t", "--to-earliest"]).unwrap();
        assert!(matches!(
            dry,
            GroupCommand::ResetOffsets { execute: false, .. }
        ));
        let applied = parse(&[
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to-earliest",
            "--execute",
        ])
        .unwrap();
        assert!(matches!(
            applied,
            GroupCommand::ResetOffsets { execute: true, .. }
        ));
        let planned = [PlannedJson {
            topic: "t",
            partition: 0,
            current_offset: None,
            new_offset: 3,
        }];
        let text = reset_table("g", &planned, false);
        assert!(
            text.starts_with("dry run: add --execute to apply"),
            "{text}"
        );
        assert!(text.contains("CURRENT-OFFSET  NEW-OFFSET"), "{text}");
        assert!(reset_table("g", &planned, true).starts_with("reset group 'g'\n"));
    }

    #[test]
    fn offsets_are_clamped_into_each_log() {
        let tp = |partition| TopicPartition::new("t", partition);
        let starts = [(tp(0), 0), (tp(1), 10)];
        let ends = [(tp(0), 5), (tp(1), 20)];
        assert_eq!(clamp_offsets(7, &starts, &ends), [(tp(0), 5), (tp(1), 10)]);
    }

    #[test]
    fn partition_lists_group_by_topic() {
        let list = [
            TopicPartition::new("orders", 0),
            TopicPartition::new("orders", 2),
            TopicPartition::new("payments", 1),
        ];
        assert_eq!(partition_list(&list), "orders:0,2 payments:1");
        assert_eq!(partition_list(&[]), "-");
    }

    #[test]
    fn describe_shows_members_and_lag() {
        let group = GroupDescription {
            group_id: "billing".into(),
            state: "stable".into(),
            group_epoch: 3,
            assignment_epoch: 3,
            assignor: "uniform".into(),
            members: vec![GroupMemberDescription {
                member_id: "m1".into(),
                instance_id: None,
                client_id: "strata-client".into(),
                client_host: "127.0.0.1".into(),
                member_epoch: 3,
                subscribed_topics: vec!["orders".into()],
                assignment: vec![TopicPartition::new("orders", 0)],
                pending_revocation: Vec::new(),
                target_assignment: vec![TopicPartition::new("orders", 0)],
            }],
            offsets: vec![GroupPartitionOffset {
                topic: "orders".into(),
                partition: 0,
                committed: Some(4),
                high_watermark: Some(10),
                lag: Some(6),
                owner: Some("m1".into()),
            }],
        };
        let text = describe_table(&group);
        assert!(text.starts_with(
            "group 'billing': stable, group epoch 3, assignment epoch 3, assignor uniform, 1 member\n"
        ));
        assert!(
            text.contains("orders  0          4          10              6    m1\n"),
            "{text}"
        );
    }
}
