//! `strata cluster status`: the controller quorum, the brokers and partition counts, from
//! `Admin::describe_cluster`, as a table for people or JSON for scripts.

use clap::Subcommand;
use serde::Serialize;
use strata_client::{Admin, ClientConfig, ClusterDescription};

use crate::Output;
use crate::error::CliError;
use crate::output::{Table, print, print_json};

/// The `cluster` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Show the controller leader and term, how far each voter lags, every broker's
    /// address, state and incarnation, and how many partitions are offline or
    /// under-replicated.
    Status,
}

/// Runs one `cluster` subcommand.
///
/// # Errors
/// Unreachable brokers, or a broker that cannot describe the cluster.
pub async fn run(bootstrap: &str, output: Output, command: ClusterCommand) -> Result<(), CliError> {
    let admin = Admin::new(ClientConfig::new(bootstrap))?;
    match command {
        ClusterCommand::Status => {
            let cluster = admin.describe_cluster().await?;
            match output {
                Output::Json => print_json(&StatusJson::from(&cluster)),
                Output::Table => print(&status_table(&cluster)),
            }
        }
    }
}

/// `cluster status --output json`. A leader or lag that is not known is `null`.
#[derive(Serialize)]
struct StatusJson<'a> {
    controller: ControllerJson,
    brokers: Vec<BrokerJson<'a>>,
    partitions: PartitionsJson,
}

#[derive(Serialize)]
struct ControllerJson {
    leader: Option<u32>,
    term: u64,
    voters: Vec<VoterJson>,
}

#[derive(Serialize)]
struct VoterJson {
    id: u32,
    lag: Option<u64>,
}

#[derive(Serialize)]
struct BrokerJson<'a> {
    id: u32,
    address: &'a str,
    /// `alive`, `fenced`, `shutting_down`, or `unknown(N)` for a state of a newer broker.
    state: String,
    incarnation: u64,
    applied_lag: Option<u64>,
}

#[derive(Serialize)]
struct PartitionsJson {
    total: u32,
    offline: u32,
    under_replicated: u32,
}

impl<'a> From<&'a ClusterDescription> for StatusJson<'a> {
    fn from(cluster: &'a ClusterDescription) -> Self {
        Self {
            controller: ControllerJson {
                leader: cluster.controller.leader,
                term: cluster.controller.term,
                voters: cluster
                    .controller
                    .voters
                    .iter()
                    .map(|voter| VoterJson {
                        id: voter.id,
                        lag: voter.lag,
                    })
                    .collect(),
            },
            brokers: cluster
                .brokers
                .iter()
                .map(|broker| BrokerJson {
                    id: broker.id,
                    address: &broker.address,
                    state: broker.state.to_string(),
                    incarnation: broker.incarnation,
                    applied_lag: broker.applied_lag,
                })
                .collect(),
            partitions: PartitionsJson {
                total: cluster.partitions.total,
                offline: cluster.partitions.offline,
                under_replicated: cluster.partitions.under_replicated,
            },
        }
    }
}

/// A number, or `-` when it is not known.
fn known(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| value.to_string())
}

/// The controller line, the voters, the brokers, and the partition counts.
fn status_table(cluster: &ClusterDescription) -> String {
    let controller = &cluster.controller;
    let leader = match controller.leader {
        Some(leader) => format!("leader {leader}"),
        None => "no leader".to_owned(),
    };
    let mut text = format!("controller: {leader}, term {}\n\n", controller.term);
    let mut voters = Table::new(&["VOTER", "LAG"]);
    for voter in &controller.voters {
        voters.row(vec![voter.id.to_string(), known(voter.lag)]);
    }
    text.push_str(&voters.render());
    text.push('\n');
    let mut brokers = Table::new(&["BROKER", "ADDRESS", "STATE", "INCARNATION", "APPLIED-LAG"]);
    for broker in &cluster.brokers {
        brokers.row(vec![
            broker.id.to_string(),
            broker.address.clone(),
            broker.state.to_string(),
            broker.incarnation.to_string(),
            known(broker.applied_lag),
        ]);
    }
    text.push_str(&brokers.render());
    let partitions = &cluster.partitions;
    text.push_str(&format!(
        "\npartitions: {} total, {} offline, {} under-replicated\n",
        partitions.total, partitions.offline, partitions.under_replicated
    ));
    text
}

#[cfg(test)]
mod tests {
    use strata_client::{
        BrokerDescription, BrokerState, ControllerDescription, PartitionCounts, VoterDescription,
    };

    use super::*;

    fn cluster() -> ClusterDescription {
        let broker = |id: u32, state, incarnation, applied_lag| BrokerDescription {
            id,
            address: format!("127.0.0.1:94{id}0"),
            state,
            incarnation,
            applied_lag,
        };
        ClusterDescription {
            controller: ControllerDescription {
                leader: Some(1),
                term: 4,
                voters: vec![
                    VoterDescription {
                        id: 1,
                        lag: Some(0),
                    },
                    VoterDescription {
                        id: 2,
                        lag: Some(3),
                    },
                    VoterDescription { id: 3, lag: None },
                ],
            },
            brokers: vec![
                broker(1, BrokerState::Alive, 7, Some(0)),
                broker(2, BrokerState::ShuttingDown, 2, Some(3)),
                broker(3, BrokerState::Fenced, 1, None),
            ],
            partitions: PartitionCounts {
                total: 12,
                offline: 4,
                under_replicated: 0,
            },
        }
    }

    #[test]
    fn json_has_the_shape_scripts_read() {
        let value = serde_json::to_value(StatusJson::from(&cluster())).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "controller": {
                    "leader": 1,
                    "term": 4,
                    "voters": [
                        {"id": 1, "lag": 0},
                        {"id": 2, "lag": 3},
                        {"id": 3, "lag": null},
                    ],
                },
                "brokers": [
                    {"id": 1, "address": "127.0.0.1:9410", "state": "alive", "incarnation": 7, "applied_lag": 0},
                    {"id": 2, "address": "127.0.0.1:9420", "state": "shutting_down", "incarnation": 2, "applied_lag": 3},
                    {"id": 3, "address": "127.0.0.1:9430", "state": "fenced", "incarnation": 1, "applied_lag": null},
                ],
                "partitions": {"total": 12, "offline": 4, "under_replicated": 0},
            })
        );
    }

    #[test]
    fn json_says_null_for_no_leader() {
        let mut cluster = cluster();
        cluster.controller.leader = None;
        let value = serde_json::to_value(StatusJson::from(&cluster)).unwrap();
        assert_eq!(value["controller"]["leader"], serde_json::Value::Null);
    }

    #[test]
    fn the_table_reads_top_down() {
        assert_eq!(
            status_table(&cluster()),
            "controller: leader 1, term 4\n\
             \n\
             VOTER  LAG\n\
             1      0\n\
             2      3\n\
             3      -\n\
             \n\
             BROKER  ADDRESS         STATE          INCARNATION  APPLIED-LAG\n\
             1       127.0.0.1:9410  alive          7            0\n\
             2       127.0.0.1:9420  shutting_down  2            3\n\
             3       127.0.0.1:9430  fenced         1            -\n\
             \n\
             partitions: 12 total, 4 offline, 0 under-replicated\n"
        );
        let mut leaderless = cluster();
        leaderless.controller.leader = None;
        assert!(status_table(&leaderless).starts_with("controller: no leader, term 4\n"));
    }
}
