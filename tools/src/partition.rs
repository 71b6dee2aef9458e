//! `strata partition elect`: partition leader elections through `Admin::elect_leaders`;
//! `strata partition reassign`: moving a partition to other replicas through
//! `Admin::reassign_partition`, waiting (unless `--no-wait`) until the move is done.
//!
//! A preferred election is safe and is what to run after a failover, to give each
//! partition back to the replica placement chose. An unclean one can lose acknowledged
//! records, so it must name one partition and be confirmed with `--yes`; without it the
//! command says what would be at risk, from the partition's metadata and the brokers'
//! states, and changes nothing.

use std::time::{Duration, Instant};

use clap::Subcommand;
use serde::Serialize;
use strata_client::{Admin, BrokerState, ClientConfig, ElectResult, PartitionInfo};

use crate::Output;
use crate::error::CliError;
use crate::output::{Table, node_list, print, print_json};

/// The `partition` subcommands.
#[derive(Debug, Subcommand)]
pub enum PartitionCommand {
    /// Elect leaders: give each partition back to its preferred replica (the first in its
    /// replica list) if that replica is alive and in sync, or with --unclean give one
    /// partition that has no leader to any alive replica.
    ///
    /// Without PARTITION every partition of the topic gets a preferred election. An
    /// unclean election may lose acknowledged records (those that only the lost in-sync
    /// replicas hold): without --yes it prints what is at risk and changes nothing.
    Elect {
        /// The topic.
        topic: String,
        /// The partition index; without it, every partition (preferred elections only).
        #[arg(required_if_eq("unclean", "true"))]
        partition: Option<u32>,
        /// Elect any alive replica of a partition with no leader, in sync or not.
        #[arg(long)]
        unclean: bool,
        /// Confirm an unclean election, accepting that acknowledged records may be lost.
        #[arg(long, requires = "unclean")]
        yes: bool,
    },
    /// Move a partition to other replicas: the new ones are added and copy the partition
    /// from its leader (at most replica_reassignment_throttle_bytes_per_second on the
    /// leader), and once all are in sync the replicas left out are removed, leadership
    /// moving off them. Asking for the original replicas while it moves cancels the move.
    ///
    /// Waits until the move is done (or --timeout-ms), unless --no-wait.
    Reassign {
        /// The topic.
        topic: String,
        /// The partition index.
        partition: u32,
        /// The target replicas' broker ids, comma-separated, preferred leader first.
        #[arg(long, value_delimiter = ',', required = true, num_args = 1)]
        replicas: Vec<u32>,
        /// Return once the move is recorded, without waiting for it to finish.
        #[arg(long)]
        no_wait: bool,
        /// How long to wait for the move to finish.
        #[arg(long, default_value_t = 300_000, value_name = "MS")]
        timeout_ms: u64,
    },
}

/// How often `partition reassign` looks whether the move is done.
const REASSIGN_POLL: Duration = Duration::from_millis(200);

/// Runs one `partition` subcommand.
///
/// # Errors
/// Unknown topics or partitions, an unconfirmed unclean election, partitions left without
/// the leader asked for, unreachable brokers.
pub async fn run(
    bootstrap: &str,
    output: Output,
    command: PartitionCommand,
) -> Result<(), CliError> {
    let admin = Admin::new(ClientConfig::new(bootstrap))?;
    match command {
        PartitionCommand::Elect {
            topic,
            partition,
            unclean,
            yes,
        } => {
            let topic_error = |error| CliError::from_client(error, &topic);
            if unclean && !yes {
                let partition = partition.expect("clap requires a partition with --unclean");
                let warning = unclean_warning(&admin, &topic, partition).await?;
                return Err(CliError::Unconfirmed(warning));
            }
            let partitions: Vec<u32> = partition.into_iter().collect();
            let results = admin
                .elect_leaders(unclean, &topic, &partitions)
                .await
                .map_err(topic_error)?;
            match output {
                Output::Json => print_json(&results_json(&topic, &results))?,
                Output::Table => print(&results_table(&topic, &results))?,
            }
            check_elected(&topic, &results)
        }
        PartitionCommand::Reassign {
            topic,
            partition,
            replicas,
            no_wait,
            timeout_ms,
        } => {
            let topic_error = |error| CliError::from_client(error, &topic);
            let partition_count = admin
                .describe_topic(&topic)
                .await
                .map_err(topic_error)?
                .partition_count();
            if partition >= partition_count {
                return Err(CliError::UnknownPartition {
                    topic,
                    partition,
                    partition_count,
                });
            }
            admin
                .reassign_partition(&topic, partition, &replicas)
                .await
                .map_err(topic_error)?;
            let done = no_wait
                || wait_reassigned(&admin, &topic, partition, &replicas, timeout_ms).await?;
            let moved = Moved {
                topic: &topic,
                partition,
                replicas: &replicas,
                done,
            };
            match output {
                Output::Json => print_json(&moved)?,
                Output::Table => print(&moved.sentence())?,
            }
            Ok(())
        }
    }
}

/// Waits until `topic`-`partition` has exactly `replicas`.
///
/// # Errors
/// [`CliError::ReassignNotDone`] after `timeout_ms`; client errors.
async fn wait_reassigned(
    admin: &Admin,
    topic: &str,
    partition: u32,
    replicas: &[u32],
    timeout_ms: u64,
) -> Result<bool, CliError> {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    loop {
        let done = admin
            .reassignment_done(topic, partition, replicas)
            .await
            .map_err(|error| CliError::from_client(error, topic))?;
        if done {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Err(CliError::ReassignNotDone {
                topic: topic.to_owned(),
                partition,
                replicas: node_list(replicas),
                timeout_ms,
            });
        }
        tokio::time::sleep(REASSIGN_POLL).await;
    }
}

/// What `partition reassign` did; `done: false` with `--no-wait`.
#[derive(Serialize)]
struct Moved<'a> {
    topic: &'a str,
    partition: u32,
    replicas: &'a [u32],
    done: bool,
}

impl Moved<'_> {
    fn sentence(&self) -> String {
        let what = format!("partition {} of topic '{}'", self.partition, self.topic);
        let replicas = node_list(self.replicas);
        if self.done {
            format!("{what} is on replicas {replicas}")
        } else {
            format!(
                "{what} is moving to replicas {replicas}; `strata topic describe {}` shows \
                 its replicas",
                self.topic
            )
        }
    }
}

/// What an unclean election of `partition` puts at risk, from the topic's metadata and
/// the brokers' states.
async fn unclean_warning(admin: &Admin, topic: &str, partition: u32) -> Result<String, CliError> {
    let described = admin
        .describe_topic(topic)
        .await
        .map_err(|error| CliError::from_client(error, topic))?;
    let partition_count = described.partition_count();
    let info = described
        .partitions
        .into_iter()
        .find(|info| info.partition == partition)
        .ok_or_else(|| CliError::UnknownPartition {
            topic: topic.to_owned(),
            partition,
            partition_count,
        })?;
    let cluster = admin.describe_cluster().await?;
    let alive: Vec<u32> = cluster
        .brokers
        .iter()
        .filter(|broker| broker.state == BrokerState::Alive)
        .map(|broker| broker.id)
        .collect();
    Ok(risk(topic, &info, &alive))
}

/// The warning for an unclean election of `info`'s partition while the brokers `alive`
/// are alive: who holds the acknowledged records, who would be elected, what is lost.
fn risk(topic: &str, info: &PartitionInfo, alive: &[u32]) -> String {
    let name = format!("partition {} of topic '{topic}'", info.partition);
    let confirm = "add --yes to elect anyway";
    if let Some(leader) = info.leader {
        return format!(
            "{name} has a leader (broker {leader}), so an unclean election would change \
             nothing; an unclean election is for a partition without one ({confirm})"
        );
    }
    let is_alive = |replica: &&u32| alive.contains(replica);
    let in_sync = &info.in_sync_replicas;
    let lost: Vec<u32> = in_sync.iter().filter(|r| !is_alive(r)).copied().collect();
    let candidates: Vec<u32> = info.replicas.iter().filter(is_alive).copied().collect();
    if candidates.is_empty() {
        return format!(
            "{name} has no leader and none of its replicas ({}) is alive: an unclean \
             election cannot elect any; bring one back first",
            node_list(&info.replicas)
        );
    }
    format!(
        "{name} has no leader; an unclean election makes one of the alive replicas {} its \
         leader, which may lack records acknowledged to producers: those held only by the \
         last in-sync replicas {} (not alive) are lost for good, and those replicas drop \
         them when they return. Waiting for an in-sync replica to return loses nothing \
         ({confirm})",
        node_list(&candidates),
        node_list(&lost)
    )
}

/// Stops with an error if some partition got no leader and its election was needed.
fn check_elected(topic: &str, results: &[ElectResult]) -> Result<(), CliError> {
    let failed = results
        .iter()
        .filter(|result| result.result.is_err() && !result.not_needed())
        .count();
    match failed {
        0 => Ok(()),
        failed => Err(CliError::NotElected {
            topic: topic.to_owned(),
            failed,
            total: results.len(),
        }),
    }
}

/// `elected`, `not_needed`, or the broker's error.
fn outcome(result: &ElectResult) -> String {
    match &result.result {
        Ok(()) => "elected".to_owned(),
        Err(_) if result.not_needed() => "not_needed".to_owned(),
        Err(error) => error.to_string(),
    }
}

/// One partition of `partition elect --output json`. A partition without a leader has
/// `leader: null`.
#[derive(Serialize)]
struct ElectedJson<'a> {
    topic: &'a str,
    partition: u32,
    leader: Option<u32>,
    leader_epoch: u32,
    /// `elected`, `not_needed`, or the broker's error.
    result: String,
}

fn results_json<'a>(topic: &'a str, results: &[ElectResult]) -> Vec<ElectedJson<'a>> {
    results
        .iter()
        .map(|result| ElectedJson {
            topic,
            partition: result.partition,
            leader: result.leader,
            leader_epoch: result.leader_epoch,
            result: outcome(result),
        })
        .collect()
}

fn results_table(topic: &str, results: &[ElectResult]) -> String {
    let mut table = Table::new(&["PARTITION", "LEADER", "EPOCH", "RESULT"]);
    for result in results {
        table.row(vec![
            result.partition.to_string(),
            result
                .leader
                .map_or_else(|| "-".to_owned(), |leader| leader.to_string()),
            result.leader_epoch.to_string(),
            outcome(result).replace('_', " "),
        ]);
    }
    format!("topic '{topic}'\n{}", table.render())
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use strata_client::Error as ClientError;
    use strata_client::protocol::ErrorCode;

    use super::*;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(subcommand)]
        command: PartitionCommand,
    }

    fn parse(argv: &[&str]) -> Result<PartitionCommand, clap::Error> {
        let mut full = vec!["partition"];
        full.extend_from_slice(argv);
        Wrapper::try_parse_from(full).map(|wrapper| wrapper.command)
    }

    fn elect(argv: &[&str]) -> (String, Option<u32>, bool, bool) {
        match parse(argv).unwrap_or_else(|error| panic!("{argv:?}: {error}")) {
            PartitionCommand::Elect {
                topic,
                partition,
                unclean,
                yes,
            } => (topic, partition, unclean, yes),
            other => panic!("{argv:?}: {other:?}"),
        }
    }

    fn reassign(argv: &[&str]) -> (String, u32, Vec<u32>, bool, u64) {
        match parse(argv).unwrap_or_else(|error| panic!("{argv:?}: {error}")) {
            PartitionCommand::Reassign {
                topic,
                partition,
                replicas,
                no_wait,
                timeout_ms,
            } => (topic, partition, replicas, no_wait, timeout_ms),
            other => panic!("{argv:?}: {other:?}"),
        }
    }

    #[test]
    fn reassign_takes_a_partition_and_its_target_replicas() {
        assert_eq!(
            reassign(&["reassign", "orders", "0", "--replicas", "2,3"]),
            ("orders".into(), 0, vec![2, 3], false, 300_000)
        );
        assert_eq!(
            reassign(&[
                "reassign",
                "orders",
                "1",
                "--replicas=3",
                "--no-wait",
                "--timeout-ms",
                "5"
            ]),
            ("orders".into(), 1, vec![3], true, 5)
        );
    }

    #[test]
    fn wrong_reassign_arguments_are_usage_errors() {
        for argv in [
            &["reassign", "orders", "0"][..],
            &["reassign", "orders", "--replicas", "1,2"],
            &["reassign", "orders", "0", "--replicas"],
            &["reassign", "orders", "0", "--replicas", "1,x"],
            &["reassign", "orders", "0", "--replicas", "1,-2"],
            &["reassign", "orders", "x", "--replicas", "1"],
            &["reassign", "orders", "0", "--replicas", "1", "2"],
            &["reassign", "orders", "0", "--replicas", "1", "--unclean"],
        ] {
            let error = parse(argv).expect_err(&format!("{argv:?} parsed"));
            assert_ne!(
                error.kind(),
                clap::error::ErrorKind::DisplayHelp,
                "{argv:?}"
            );
        }
    }

    #[test]
    fn a_move_says_where_the_partition_is_or_is_going() {
        let moved = |done| Moved {
            topic: "orders",
            partition: 0,
            replicas: &[2, 3],
            done,
        };
        assert_eq!(
            moved(true).sentence(),
            "partition 0 of topic 'orders' is on replicas 2,3"
        );
        assert!(
            moved(false)
                .sentence()
                .contains("is moving to replicas 2,3")
        );
        assert_eq!(
            serde_json::to_value(moved(true)).unwrap(),
            serde_json::json!({"topic": "orders", "partition": 0, "replicas": [2, 3], "done": true})
        );
    }

    #[test]
    fn elect_takes_a_topic_and_an_optional_partition() {
        assert_eq!(
            elect(&["elect", "orders"]),
            ("orders".into(), None, false, false)
        );
        assert_eq!(
            elect(&["elect", "orders", "3"]),
            ("orders".into(), Some(3), false, false)
        );
        assert_eq!(
            elect(&["elect", "--unclean", "orders", "3", "--yes"]),
            ("orders".into(), Some(3), true, true)
        );
        assert_eq!(
            elect(&["elect", "--unclean", "orders", "3"]),
            ("orders".into(), Some(3), true, false)
        );
    }

    #[test]
    fn wrong_elect_arguments_are_usage_errors() {
        for argv in [
            &["elect"][..],
            &["elect", "orders", "x"],
            &["elect", "orders", "-1"],
            &["elect", "orders", "4294967296"],
            &["elect", "orders", "1", "2"],
            &["elect", "--unclean", "orders"],
            &["elect", "orders", "1", "--yes"],
            &["elect", "orders", "--yes"],
            &["elect", "orders", "--force"],
        ] {
            let error = parse(argv).expect_err(&format!("{argv:?} parsed"));
            assert_ne!(
                error.kind(),
                clap::error::ErrorKind::DisplayHelp,
                "{argv:?}"
            );
        }
        let error = parse(&["elect", "--unclean", "orders"]).unwrap_err();
        assert_eq!(
            error.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        let error = parse(&["elect", "orders", "1", "--yes"]).unwrap_err();
        assert_eq!(
            error.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
    }

    fn info(leader: Option<u32>, replicas: &[u32], in_sync_replicas: &[u32]) -> PartitionInfo {
        PartitionInfo {
            partition: 3,
            leader,
            leader_epoch: 5,
            replicas: replicas.to_vec(),
            in_sync_replicas: in_sync_replicas.to_vec(),
        }
    }

    #[test]
    fn the_risk_names_who_is_lost_and_who_may_lead() {
        let warning = risk("orders", &info(None, &[1, 2, 3], &[1]), &[2, 3]);
        assert_eq!(
            warning,
            "partition 3 of topic 'orders' has no leader; an unclean election makes one of \
             the alive replicas 2,3 its leader, which may lack records acknowledged to \
             producers: those held only by the last in-sync replicas 1 (not alive) are lost \
             for good, and those replicas drop them when they return. Waiting for an \
             in-sync replica to return loses nothing (add --yes to elect anyway)"
        );
        let nobody = risk("orders", &info(None, &[1, 2], &[1]), &[3]);
        assert!(
            nobody.contains("none of its replicas (1,2) is alive"),
            "{nobody}"
        );
        let led = risk("orders", &info(Some(2), &[1, 2], &[2]), &[1, 2]);
        assert!(led.contains("has a leader (broker 2)"), "{led}");
    }

    fn result(partition: u32, leader: Option<u32>, code: ErrorCode) -> ElectResult {
        ElectResult {
            partition,
            leader,
            leader_epoch: 4,
            result: if code.is_ok() {
                Ok(())
            } else {
                Err(ClientError::Broker {
                    code,
                    message: String::new(),
                })
            },
        }
    }

    #[test]
    fn results_print_per_partition_and_only_real_failures_fail() {
        let results = [
            result(0, Some(1), ErrorCode::None),
            result(1, Some(2), ErrorCode::ElectionNotNeeded),
            result(2, None, ErrorCode::EligibleLeadersNotAvailable),
        ];
        let table = results_table("orders", &results);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "topic 'orders'");
        assert_eq!(lines[1], "PARTITION  LEADER  EPOCH  RESULT");
        assert_eq!(lines[2], "0          1       4      elected");
        assert_eq!(lines[3], "1          2       4      not needed");
        assert!(
            lines[4]
                .starts_with("2          -       4      broker error EligibleLeadersNotAvailable")
        );
        let json = serde_json::to_value(results_json("orders", &results)).unwrap();
        assert_eq!(
            json[1],
            serde_json::json!({"topic": "orders", "partition": 1, "leader": 2, "leader_epoch": 4, "result": "not_needed"})
        );
        assert_eq!(json[2]["leader"], serde_json::Value::Null);
        let error = check_elected("orders", &results).unwrap_err();
        assert_eq!(
            error.to_string(),
            "1 of 3 partitions of topic 'orders' got no leader; the table above says why"
        );
        assert!(check_elected("orders", &results[..2]).is_ok());
    }
}
