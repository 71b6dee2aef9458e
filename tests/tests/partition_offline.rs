//! Corruption below a partition's recovery point takes only that partition offline: the
//! broker still starts and serves every other partition, the damaged one answers
//! `PartitionOffline` with a message naming the file, `strata_partitions_offline` counts
//! it, and deleting its topic removes its files so the name can be created afresh.
//!
//! Each case stops the broker with SIGTERM, so the clean shutdown covers everything it
//! wrote, damages one file, and restarts on the same data directory.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use strata_protocol::messages::*;
use strata_protocol::{ErrorCode, Response};
use strata_tests::group::commit_request;
use strata_tests::*;

/// Topics that keep every segment (the test batches carry timestamps from 2023).
const KEEP: &[(&str, &str)] = &[("retention_ms", "-1")];

fn segment(data_dir: &Path, partition_dir: &str, base_offset: u64) -> PathBuf {
    data_dir
        .join(partition_dir)
        .join(format!("{base_offset:020}.log"))
}

/// Commits per group in the offsets-log case.
const COMMIT_ROUNDS: usize = 40;

/// Flips one bit of the byte at `position` of `path`.
fn flip_bit(path: &Path, position: usize) {
    let mut bytes = fs::read(path).unwrap();
    assert!(position < bytes.len(), "{} holds data", path.display());
    bytes[position] ^= 0x10;
    fs::write(path, bytes).unwrap();
}

/// Flips one bit of the last byte of `path`: inside the last batch's records, which its
/// CRC covers.
fn flip_last_byte(path: &Path) {
    let length = fs::metadata(path).unwrap().len() as usize;
    flip_bit(path, length.saturating_sub(1));
}

/// Base offsets of a partition directory's segments, oldest first.
fn segment_bases(dir: &Path) -> Vec<u64> {
    let mut bases: Vec<u64> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".log")?.parse().ok()
        })
        .collect();
    bases.sort_unstable();
    bases
}

/// A broker whose log goes to a file, to check what it logs at startup. Killed on drop.
struct LoggedBroker {
    child: Child,
    address: String,
    metrics_address: String,
}

impl LoggedBroker {
    /// Starts `strata-broker` on `data_dir`, logging warnings and errors as JSON lines to
    /// `log`, and returns once it serves (it has logged everything about recovery by then).
    fn start(data_dir: &Path, log: &Path) -> Self {
        let mut child = Command::new(binary("strata-broker"))
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(["--log-level", "warn", "--log-format", "json"])
            .arg("--data-dir")
            .arg(data_dir)
            .env_remove("RUST_LOG")
            .env_remove("STRATA_LOG_FORMAT")
            .stdout(Stdio::piped())
            .stderr(fs::File::create(log).unwrap())
            .spawn()
            .expect("spawn strata-broker");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let line = receiver.recv_timeout(WAIT).unwrap_or_default();
        // "strata-broker listening on ADDR (metrics on ADDR)"
        let words: Vec<&str> = line.split_whitespace().collect();
        let address = words.get(3).map(|word| (*word).to_owned());
        let metrics_address = words
            .get(6)
            .map(|word| word.trim_end_matches(')').to_owned());
        let (Some(address), Some(metrics_address)) = (address, metrics_address) else {
            panic!(
                "strata-broker did not serve: {line:?}; log: {}",
                fs::read_to_string(log).unwrap_or_default()
            )
        };
        Self {
            child,
            address,
            metrics_address,
        }
    }
}

impl Drop for LoggedBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn list_offset(client: &mut Client, topic: &str, partition: u32) -> (ErrorCode, i64) {
    let Response::ListOffsets(mut response) = client
        .call(ListOffsetsRequest {
            topics: vec![ListOffsetsTopic {
                name: topic.into(),
                partitions: vec![ListOffsetsPartition {
                    partition,
                    timestamp: LATEST_TIMESTAMP,
                }],
            }],
        })
        .await
    else {
        panic!("wrong response type")
    };
    let answer = response.topics.remove(0).partitions.remove(0);
    (answer.error_code, answer.offset)
}

async fn metadata_codes(client: &mut Client, topic: &str) -> Vec<ErrorCode> {
    let Response::Metadata(mut metadata) = client
        .call(MetadataRequest {
            topics: Some(vec![topic.into()]),
        })
        .await
    else {
        panic!("wrong response type")
    };
    let topic = metadata.topics.remove(0);
    assert_eq!(topic.error_code, ErrorCode::None);
    topic.partitions.iter().map(|p| p.error_code).collect()
}

async fn described_partitions(client: &mut Client, topic: &str) -> Vec<DescribedPartition> {
    let Response::DescribeTopics(mut described) = client
        .call(DescribeTopicsRequest {
            names: Some(vec![topic.into()]),
        })
        .await
    else {
        panic!("wrong response type")
    };
    let topic = described.topics.remove(0);
    assert_eq!(
        topic.error_code,
        ErrorCode::None,
        "{:?}",
        topic.error_message
    );
    topic.partitions
}

/// How many of `groups` OffsetFetch refuses with `PartitionOffline`.
async fn offline_groups(client: &mut Client, groups: &[String]) -> usize {
    let mut refused = 0;
    for group in groups {
        let fetched = client
            .try_call(OffsetFetchRequest {
                group_id: group.clone(),
                topics: None,
            })
            .await;
        if let Err((code, message)) = fetched {
            assert_eq!(code, ErrorCode::PartitionOffline, "{message}");
            refused += 1;
        }
    }
    refused
}

#[tokio::test]
async fn a_flipped_byte_takes_only_its_partition_offline() {
    bounded(async {
        let dir = data_dir();
        let mut broker = BrokerProcess::start(dir.path(), &[]);
        let mut client = Client::connect(&broker.address).await;
        client.create_topic("healthy", 1, KEEP).await;
        client.create_topic("damaged", 2, KEEP).await;
        for (topic, partition) in [("healthy", 0), ("damaged", 0), ("damaged", 1)] {
            let produced = client
                .produce(topic, partition, Acks::All, batch_of(topic, 5))
                .await;
            assert_eq!(produced.error_code, ErrorCode::None);
        }
        drop(client);
        assert_eq!(broker.terminate(), Some(0), "clean shutdown");

        let damaged = segment(dir.path(), "damaged-0", 0);
        flip_last_byte(&damaged);
        let damaged_bytes = fs::read(&damaged).unwrap();
        broker.restart();
        let mut client = Client::connect(&broker.address).await;

        // Every other partition serves: produce, then read back old and new records.
        for (topic, partition) in [("healthy", 0), ("damaged", 1)] {
            let produced = client
                .produce(topic, partition, Acks::All, batch_of("after", 1))
                .await;
            assert_eq!(produced.error_code, ErrorCode::None, "{topic}-{partition}");
            assert_eq!(produced.base_offset, 5, "{topic}-{partition}");
            let mut expected: Vec<String> = (0..5).map(|i| format!("{topic}-{i}")).collect();
            expected.push("after-0".into());
            assert_eq!(
                values(&client.read_all(topic, partition, 0).await),
                expected
            );
        }

        // The damaged one answers PartitionOffline, naming the file, to every request.
        let produced = client
            .produce("damaged", 0, Acks::Leader, batch_of("refused", 1))
            .await;
        assert_eq!(produced.error_code, ErrorCode::PartitionOffline);
        let message = produced.error_message.unwrap_or_default();
        assert!(
            message.contains(&damaged.display().to_string()) && message.contains("CRC"),
            "{message}"
        );
        let fetched = client.fetch("damaged", 0, 0, 0, 0).await;
        assert_eq!(fetched.error_code, ErrorCode::PartitionOffline);
        assert!(fetched.records.is_empty());
        assert_eq!(
            list_offset(&mut client, "damaged", 0).await.0,
            ErrorCode::PartitionOffline
        );
        assert_eq!(
            list_offset(&mut client, "damaged", 1).await,
            (ErrorCode::None, 6)
        );
        assert_eq!(
            metadata_codes(&mut client, "damaged").await,
            [ErrorCode::PartitionOffline, ErrorCode::None]
        );
        let described = described_partitions(&mut client, "damaged").await;
        assert_eq!(described[0].error_code, ErrorCode::PartitionOffline);
        let reason = described[0].error_message.clone().unwrap_or_default();
        assert!(reason.contains("00000000000000000000.log"), "{reason}");
        assert_eq!(described[1].error_code, ErrorCode::None);
        assert_eq!(described[1].log_end_offset, 6);
        let cli = strata(
            Some(&broker.address),
            &["topic", "describe", "damaged"],
            b"",
        );
        assert_eq!(cli.code, Some(0), "{cli:?}");
        let offline = format!("partition 0 is OFFLINE: corrupt {}", damaged.display());
        assert!(cli.stdout.contains(&offline), "{}", cli.stdout);
        wait_for_metrics(&broker.metrics_address, &["strata_partitions_offline 1"]).await;
        assert_eq!(
            fs::read(&damaged).unwrap(),
            damaged_bytes,
            "recovery cut nothing"
        );

        // Another restart finds the same damage: the first one did not consume what made
        // the data trusted, so nothing is cut as a torn tail now.
        drop(client);
        assert_eq!(broker.terminate(), Some(0), "clean shutdown");
        broker.restart();
        let mut client = Client::connect(&broker.address).await;
        let produced = client
            .produce("damaged", 0, Acks::Leader, batch_of("refused", 1))
            .await;
        assert_eq!(produced.error_code, ErrorCode::PartitionOffline);
        assert_eq!(fs::read(&damaged).unwrap(), damaged_bytes, "still uncut");

        // The operator's way out: delete the topic (its damaged files go too) and
        // create it again.
        client.delete_topic("damaged").await;
        assert!(
            !dir.path().join("damaged-0").exists(),
            "damaged files removed"
        );
        wait_for_metrics(&broker.metrics_address, &["strata_partitions_offline 0"]).await;
        client.create_topic("damaged", 2, KEEP).await;
        let produced = client
            .produce("damaged", 0, Acks::All, batch_of("fresh", 1))
            .await;
        assert_eq!(
            (produced.error_code, produced.base_offset),
            (ErrorCode::None, 0)
        );
    })
    .await;
}

#[tokio::test]
async fn a_missing_middle_segment_takes_its_partition_offline() {
    bounded(async {
        let dir = data_dir();
        let mut broker = BrokerProcess::start(dir.path(), &[]);
        let mut client = Client::connect(&broker.address).await;
        client
            .create_topic(
                "rolled",
                1,
                &[
                    ("retention_ms", "-1"),
                    ("segment_bytes", "16384"),
                    ("max_message_bytes", "8192"),
                ],
            )
            .await;
        client.create_topic("healthy", 1, KEEP).await;
        for index in 0..20 {
            let batch = batch_of(&format!("batch{index}"), 100);
            let produced = client.produce("rolled", 0, Acks::Leader, batch).await;
            assert_eq!(produced.error_code, ErrorCode::None);
        }
        drop(client);
        assert_eq!(broker.terminate(), Some(0), "clean shutdown");

        let partition_dir = dir.path().join("rolled-0");
        let bases = segment_bases(&partition_dir);
        assert!(bases.len() >= 3, "segments {bases:?}");
        fs::remove_file(segment(dir.path(), "rolled-0", bases[1])).unwrap();
        let log = dir.path().join("broker.log");
        let logged_broker = LoggedBroker::start(dir.path(), &log);
        let mut client = Client::connect(&logged_broker.address).await;
        let next = segment(dir.path(), "rolled-0", bases[2]);
        let logged = fs::read_to_string(&log).unwrap();
        let line = logged
            .lines()
            .find(|line| line.contains("partition is offline"))
            .unwrap_or_else(|| panic!("no offline partition logged: {logged}"));
        assert!(
            line.contains("\"ERROR\"")
                && line.contains("\"rolled\"")
                && line.contains(&next.display().to_string())
                && line.contains("missing"),
            "{line}"
        );

        let produced = client
            .produce("healthy", 0, Acks::All, batch_of("ok", 1))
            .await;
        assert_eq!(produced.error_code, ErrorCode::None);
        let produced = client
            .produce("rolled", 0, Acks::Leader, batch_of("refused", 1))
            .await;
        assert_eq!(produced.error_code, ErrorCode::PartitionOffline);
        let message = produced.error_message.unwrap_or_default();
        assert!(
            message.contains(&next.display().to_string()) && message.contains("missing"),
            "{message}"
        );
        wait_for_metrics(
            &logged_broker.metrics_address,
            &["strata_partitions_offline 1"],
        )
        .await;
        assert!(
            partition_dir.join(format!("{:020}.log", bases[0])).exists(),
            "recovery cut nothing"
        );
    })
    .await;
}

#[tokio::test]
async fn a_damaged_offsets_partition_refuses_only_its_groups() {
    bounded(async {
        let dir = data_dir();
        let settings = ["group_offsets_partitions=2"];
        let mut broker = BrokerProcess::start(dir.path(), &settings);
        let mut client = Client::connect(&broker.address).await;
        client.create_topic("t", 1, KEEP).await;
        let groups: Vec<String> = (0..8).map(|index| format!("group-{index}")).collect();
        // Enough commits that the first batch lies before the last offset-index entry:
        // recovery after a clean shutdown does not read it, the offsets log's full read at
        // startup does.
        for round in 0..COMMIT_ROUNDS {
            for (index, group) in groups.iter().enumerate() {
                let offset = (round * 8 + index) as u64;
                let request = commit_request(group, "", ADMIN_COMMIT_EPOCH, ("t", 0), offset);
                let Response::OffsetCommit(reply) = client.call(request).await else {
                    panic!("wrong response type")
                };
                assert_eq!(reply.topics[0].partitions[0].error_code, ErrorCode::None);
            }
        }
        drop(client);
        assert_eq!(broker.terminate(), Some(0), "clean shutdown");

        let damaged = segment(dir.path(), "__consumer_offsets-0", 0);
        let length = fs::metadata(&damaged).unwrap().len();
        assert!(
            fs::metadata(&damaged).unwrap().len() > 8192,
            "several index intervals"
        );
        // Byte 40 is inside the first batch's max_timestamp, which its CRC covers.
        flip_bit(&damaged, 40);
        broker.restart();
        let mut client = Client::connect(&broker.address).await;
        let (mut served, mut refused) = (0, 0);
        for (index, group) in groups.iter().enumerate() {
            let fetched = client
                .try_call(OffsetFetchRequest {
                    group_id: group.clone(),
                    topics: None,
                })
                .await;
            match fetched {
                Ok(_) => {
                    served += 1;
                    let last = ((COMMIT_ROUNDS - 1) * 8 + index) as i64;
                    assert_eq!(client.committed(group, "t", 1).await, [last]);
                    let request = commit_request(group, "", ADMIN_COMMIT_EPOCH, ("t", 0), 100);
                    let Response::OffsetCommit(reply) = client.call(request).await else {
                        panic!("wrong response type")
                    };
                    assert_eq!(reply.topics[0].partitions[0].error_code, ErrorCode::None);
                }
                Err((code, message)) => {
                    refused += 1;
                    assert_eq!(code, ErrorCode::PartitionOffline, "{message}");
                    assert!(message.contains("__consumer_offsets-0"), "{message}");
                    let request = commit_request(group, "", ADMIN_COMMIT_EPOCH, ("t", 0), 100);
                    let committed = client.try_call(request).await;
                    assert!(
                        matches!(committed, Err((ErrorCode::PartitionOffline, _))),
                        "{committed:?}"
                    );
                }
            }
        }
        assert!(
            served > 0 && refused > 0,
            "{served} served, {refused} refused"
        );
        wait_for_metrics(&broker.metrics_address, &["strata_partitions_offline 1"]).await;

        // Another restart refuses the same groups: the damaged partition was closed
        // cleanly, so its active segment was not cut as a torn tail.
        drop(client);
        assert_eq!(broker.terminate(), Some(0), "clean shutdown");
        broker.restart();
        let mut client = Client::connect(&broker.address).await;
        assert_eq!(offline_groups(&mut client, &groups).await, refused);
        assert_eq!(fs::metadata(&damaged).unwrap().len(), length, "nothing cut");
    })
    .await;
}
