//! A one-node broker whose metadata log is gone (wiped after damage, or never there: the
//! data directory of an older single node) keeps its topics and their data: a new log
//! never deletes a local copy it did not make, and the broker enters such copies into it
//! at start. A broker given peers refuses to start on such a directory, naming them.

use std::path::Path;

use strata_client::{Admin, ClientConfig, TopicPartition};
use strata_protocol::messages::*;
use strata_tests::*;

fn admin(address: &str) -> Admin {
    Admin::new(ClientConfig::new(address)).expect("admin")
}

async fn topics(client: &mut Client) -> Vec<(String, usize)> {
    let strata_protocol::Response::Metadata(metadata) =
        client.call(MetadataRequest { topics: None }).await
    else {
        panic!("not a metadata response")
    };
    metadata
        .topics
        .into_iter()
        .map(|topic| (topic.name, topic.partitions.len()))
        .collect()
}

/// Starts a broker on `dir`, creates topic `kept` with 2 partitions holding records and
/// group `keeper`'s committed offset 2 on partition 0, and stops it with SIGTERM.
async fn a_stopped_broker_with_data(dir: &Path) {
    let mut broker = BrokerProcess::start(dir, &[]);
    let mut client = Client::connect(&broker.address).await;
    client.create_topic("kept", 2, &[]).await;
    for partition in 0..2 {
        client
            .produce(
                "kept",
                partition,
                Acks::All,
                batch_of(&format!("p{partition}"), 3),
            )
            .await;
    }
    drop(client);
    admin(&broker.address)
        .reset_group_offsets("keeper", &[(TopicPartition::new("kept", 0), 2)])
        .await
        .expect("commit keeper's offset");
    assert_eq!(broker.terminate(), Some(0));
}

/// Checks that `kept` has its records, `appended` of them added by earlier calls, and
/// takes one more.
async fn assert_kept(broker: &BrokerProcess, appended: u64) {
    let committed = admin(&broker.address)
        .group_offsets("keeper")
        .await
        .expect("keeper's offsets");
    assert_eq!(committed, [(TopicPartition::new("kept", 0), 2)]);
    let mut client = Client::connect(&broker.address).await;
    assert_eq!(topics(&mut client).await, [("kept".to_owned(), 2)]);
    for partition in 0..2 {
        let mut expected: Vec<String> = (0..3).map(|i| format!("p{partition}-{i}")).collect();
        if partition == 0 {
            expected.extend((0..appended).map(|_| "after-0".to_owned()));
        }
        assert_eq!(
            values(&client.read_all("kept", partition, 0).await),
            expected
        );
    }
    let response = client
        .produce("kept", 0, Acks::Leader, batch_of("after", 1))
        .await;
    assert_eq!(
        response.base_offset,
        3 + appended,
        "appends continue at the log end"
    );
}

#[tokio::test]
async fn a_wiped_metadata_log_loses_no_topic() {
    bounded(async {
        let dir = data_dir();
        a_stopped_broker_with_data(dir.path()).await;
        std::fs::remove_dir_all(dir.path().join("metadata")).unwrap();
        let broker = BrokerProcess::start(dir.path(), &[]);
        assert_kept(&broker, 0).await;
    })
    .await;
}

#[tokio::test]
async fn an_older_single_node_directory_keeps_its_topics() {
    bounded(async {
        let dir = data_dir();
        a_stopped_broker_with_data(dir.path()).await;
        // What an older single node left: no metadata log, and topic files with only the
        // partition count and the config.
        std::fs::remove_dir_all(dir.path().join("metadata")).unwrap();
        let record = dir.path().join("topics").join("kept.toml");
        let older: String = std::fs::read_to_string(&record)
            .unwrap()
            .lines()
            .filter(|line| {
                !["id", "log_id", "hosted"]
                    .iter()
                    .any(|key| line.starts_with(key))
            })
            .map(|line| format!("{line}\n"))
            .collect();
        std::fs::write(&record, older).unwrap();
        let mut broker = BrokerProcess::start(dir.path(), &[]);
        assert_kept(&broker, 0).await;
        // Entered into the new log and adopted: a restart keeps it as a topic of its own.
        broker.restart();
        assert_kept(&broker, 1).await;
    })
    .await;
}

#[tokio::test]
async fn a_broker_with_peers_refuses_topics_its_log_did_not_make() {
    bounded(async {
        let dir = data_dir();
        a_stopped_broker_with_data(dir.path()).await;
        // Its log wiped: the new one, not formed yet, made none of the topics.
        std::fs::remove_dir_all(dir.path().join("metadata")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let logs = tempfile::tempdir().unwrap();
        let mut launch = Launch::broker(vec![
            "--node-id".into(),
            "1".into(),
            "--cluster-listen".into(),
            format!("127.0.0.1:{port}").into(),
            "--peers".into(),
            format!("1@127.0.0.1:{port},2@127.0.0.1:1,3@127.0.0.1:2").into(),
        ]);
        launch.stderr = Some(logs.path().join("stderr"));
        let failure = BrokerProcess::try_start(dir.path(), Vec::new(), launch)
            .expect_err("a broker with peers must refuse the directory");
        assert_eq!(failure.code, Some(1), "{failure:?}");
        assert!(
            failure.detail.contains("kept") && failure.detail.contains("did not make"),
            "{failure:?}"
        );
    })
    .await;
}
