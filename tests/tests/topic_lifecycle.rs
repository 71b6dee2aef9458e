//! A topic's life on a real broker leaves the data directory clean and private: names up
//! to the 249-byte limit work, a failed create leaves nothing behind and startup sweeps
//! orphan partition directories, colliding names are refused, the data directory and its
//! files are private, and a deleted topic's committed offsets go with it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use strata_protocol::messages::*;
use strata_protocol::{ErrorCode, Response};
use strata_tests::group::*;
use strata_tests::*;

async fn try_create(client: &mut Client, name: &str, partitions: u32) -> TopicResult {
    let Response::CreateTopics(mut response) = client
        .call(CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: name.into(),
                partition_count: partitions,
                replication_factor: 1,
                configs: Vec::new(),
            }],
            timeout_ms: 10_000,
            validate_only: false,
        })
        .await
    else {
        panic!("wrong response type")
    };
    response.topics.remove(0)
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn names_of_247_to_249_bytes_can_be_created_used_and_reopened() {
    bounded(async {
        let dir = data_dir();
        let mut broker = BrokerProcess::start(dir.path(), &[]);
        let mut client = Client::connect(&broker.address).await;
        let names: Vec<String> = (247..=249).map(|length| "n".repeat(length)).collect();
        for name in &names {
            client.create_topic(name, 2, &[]).await;
            let produced = client.produce(name, 1, Acks::All, batch_of("v", 3)).await;
            assert_eq!(produced.error_code, ErrorCode::None, "{}", name.len());
        }
        broker.restart();
        let mut client = Client::connect(&broker.address).await;
        for name in &names {
            let records = client.read_all(name, 1, 0).await;
            assert_eq!(values(&records), ["v-0", "v-1", "v-2"], "{}", name.len());
        }
    })
    .await;
}

#[tokio::test]
async fn a_failed_create_leaves_nothing_behind() {
    bounded(async {
        let dir = data_dir();
        let broker = BrokerProcess::start(dir.path(), &[]);
        let mut client = Client::connect(&broker.address).await;
        // The metadata file's place is taken by a directory, so the create fails after
        // its partition directories exist.
        let obstacle = dir.path().join("topics").join("doomed.toml");
        std::fs::create_dir_all(obstacle.join("keep")).unwrap();
        let result = try_create(&mut client, "doomed", 3).await;
        assert_eq!(result.error_code, ErrorCode::StorageError, "{result:?}");
        for partition in 0..3 {
            let partition_dir = dir.path().join(format!("doomed-{partition}"));
            assert!(
                !partition_dir.exists(),
                "{} is left",
                partition_dir.display()
            );
        }
        assert_eq!(entries(&dir.path().join("topics")), ["doomed.toml"]);

        // Once the way is clear, the name works.
        std::fs::remove_dir_all(&obstacle).unwrap();
        client.create_topic("doomed", 3, &[]).await;
    })
    .await;
}

#[tokio::test]
async fn startup_removes_orphan_partition_directories_and_nothing_else() {
    bounded(async {
        let dir = data_dir();
        let mut broker = BrokerProcess::start(dir.path(), &[]);
        let mut client = Client::connect(&broker.address).await;
        client.create_topic("kept", 2, &[]).await;
        let produced = client.produce("kept", 0, Acks::All, batch_of("v", 2)).await;
        assert_eq!(produced.error_code, ErrorCode::None);
        broker.terminate();

        // What a crash mid-create or mid-grow leaves: a partition log with no topic
        // metadata, and one beyond its topic's partition count.
        let segment = "00000000000000000000.log";
        for orphan in ["ghost-0", "kept-2"] {
            std::fs::create_dir(dir.path().join(orphan)).unwrap();
            std::fs::write(dir.path().join(orphan).join(segment), b"").unwrap();
        }
        // Directories named like partitions but holding other files are not the broker's.
        std::fs::create_dir(dir.path().join("photos-2019")).unwrap();
        std::fs::write(dir.path().join("photos-2019").join("beach.jpg"), b"").unwrap();

        broker.restart();
        let remaining = entries(dir.path());
        assert!(!remaining.contains(&"ghost-0".to_owned()), "{remaining:?}");
        assert!(!remaining.contains(&"kept-2".to_owned()), "{remaining:?}");
        for kept in ["kept-0", "kept-1", "photos-2019", "__consumer_offsets-0"] {
            assert!(
                remaining.contains(&kept.to_owned()),
                "{kept}: {remaining:?}"
            );
        }
        let mut client = Client::connect(&broker.address).await;
        assert_eq!(values(&client.read_all("kept", 0, 0).await), ["v-0", "v-1"]);
    })
    .await;
}

#[tokio::test]
async fn names_differing_only_in_case_or_dot_versus_underscore_are_refused() {
    bounded(async {
        let dir = data_dir();
        let broker = BrokerProcess::start(dir.path(), &[]);
        let mut client = Client::connect(&broker.address).await;
        client.create_topic("orders", 1, &[]).await;
        client.create_topic("a_b", 1, &[]).await;
        for (name, existing) in [
            ("Orders", "orders"),
            ("ORDERS", "orders"),
            ("a.b", "a_b"),
            ("A.B", "a_b"),
        ] {
            let result = try_create(&mut client, name, 1).await;
            assert_eq!(result.error_code, ErrorCode::InvalidTopic, "{name}");
            let message = result.error_message.unwrap_or_default();
            assert!(
                message.contains(&format!("collides with existing topic '{existing}'")),
                "{name}: {message}"
            );
        }
        assert_eq!(
            try_create(&mut client, "orders", 1).await.error_code,
            ErrorCode::TopicAlreadyExists
        );
        // Names that differ otherwise are still distinct topics.
        client.create_topic("a-b", 1, &[]).await;
        client.create_topic("orders2", 1, &[]).await;
    })
    .await;
}

fn assert_private(path: &Path) {
    for entry in std::fs::read_dir(path).unwrap() {
        let entry = entry.unwrap();
        let metadata = entry.metadata().unwrap();
        let mode = metadata.permissions().mode() & 0o777;
        if metadata.is_dir() {
            assert_private(&entry.path());
        } else {
            assert_eq!(mode, 0o600, "{}", entry.path().display());
        }
    }
}

#[tokio::test]
async fn the_data_directory_is_0700_and_its_files_0600() {
    bounded(async {
        let dir = data_dir();
        let data = dir.path().join("data");
        let mut broker = BrokerProcess::start(&data, &[]);
        let mut client = Client::connect(&broker.address).await;
        client.create_topic("private", 2, &[]).await;
        let produced = client
            .produce("private", 0, Acks::All, batch_of("v", 2))
            .await;
        assert_eq!(produced.error_code, ErrorCode::None);
        let Response::InitProducerId(reply) = client
            .call(InitProducerIdRequest {
                producer_id: -1,
                producer_epoch: -1,
            })
            .await
        else {
            panic!("wrong response type")
        };
        assert_eq!(reply.error_code, ErrorCode::None);
        broker.terminate();

        let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let names = entries(&data);
        for file in [".lock", "cluster_id", "metadata", "topics", "private-0"] {
            assert!(names.contains(&file.to_owned()), "{file}: {names:?}");
        }
        assert_private(&data);
    })
    .await;
}

#[tokio::test]
async fn a_recreated_topic_has_no_committed_offsets_of_the_deleted_one() {
    bounded(async {
        let dir = data_dir();
        let mut broker = BrokerProcess::start(dir.path(), &[]);
        let mut client = Client::connect(&broker.address).await;
        client.create_topic("t", 2, &[]).await;
        client.create_topic("other", 1, &[]).await;
        for (topic, partition) in [("t", 0), ("t", 1), ("other", 0)] {
            client
                .call(commit_request(
                    "g",
                    "",
                    ADMIN_COMMIT_EPOCH,
                    (topic, partition),
                    7,
                ))
                .await;
        }
        assert_eq!(client.committed("g", "t", 2).await, vec![7, 7]);

        client.delete_topic("t").await;
        client.create_topic("t", 2, &[]).await;
        assert_eq!(client.committed("g", "t", 2).await, vec![-1, -1]);
        assert_eq!(client.committed("g", "other", 1).await, vec![7]);

        // The deletion is in the offsets log: a restart does not bring them back.
        broker.restart();
        let mut client = Client::connect(&broker.address).await;
        assert_eq!(client.committed("g", "t", 2).await, vec![-1, -1]);
        assert_eq!(client.committed("g", "other", 1).await, vec![7]);
    })
    .await;
}
