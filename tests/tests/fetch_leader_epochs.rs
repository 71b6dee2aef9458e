//! Fetch version 1 on a single broker (KIP-320): every answer names the partition's
//! leader epoch (a single node leads its partitions at their metadata epoch, 0); a
//! fetch naming a newer epoch, or a batch of one, is refused `UnknownLeaderEpoch`,
//! retriable (an older one, `FencedLeaderEpoch`, needs a leader change); a consumer whose last fetched epoch does not
//! reach its fetch offset in the leader's log is told where the log diverges, with no
//! records and without waiting; and a version 0 fetch still gets the version 0 answer.

use strata_broker::server::Server;
use strata_protocol::messages::*;
use strata_protocol::{ErrorCode, Response};
use strata_tests::io::in_process_config;
use strata_tests::{Client, batch_of, bounded, data_dir, decode_records};

/// A version 1 fetch of `t-0` from `fetch_offset`, waiting up to `max_wait_ms`.
async fn fetch_v1(
    client: &mut Client,
    current_leader_epoch: u32,
    fetch_offset: u64,
    last_fetched_epoch: u32,
    max_wait_ms: u32,
) -> FetchPartitionResponse {
    let request = FetchRequest {
        max_wait_ms,
        min_bytes: 1,
        max_bytes: 1 << 20,
        topics: vec![FetchTopic {
            name: "t".into(),
            partitions: vec![FetchPartition {
                partition: 0,
                current_leader_epoch,
                fetch_offset,
                last_fetched_epoch,
                partition_max_bytes: 1 << 20,
            }],
        }],
    };
    let Ok(Response::Fetch(mut response)) = client.try_call_at(1, request).await else {
        panic!("not a fetch response")
    };
    response.topics.remove(0).partitions.remove(0)
}

/// The leader epoch the metadata gives `t-0`.
async fn metadata_epoch(client: &mut Client) -> u32 {
    let request = MetadataRequest {
        topics: Some(vec!["t".into()]),
    };
    let Response::Metadata(response) = client.call(request).await else {
        panic!("not a metadata response")
    };
    response.topics[0].partitions[0].leader_epoch
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_v1_checks_leader_epochs_and_answers_divergence() {
    bounded(async {
        let dir = data_dir();
        let server = Server::start(in_process_config(dir.path())).await.unwrap();
        let mut client = Client::connect(&server.address.to_string()).await;
        client
            .create_topic("t", 1, &[("durability", "never")])
            .await;
        let produced = client.produce("t", 0, Acks::Leader, batch_of("a", 3)).await;
        assert_eq!(produced.error_code, ErrorCode::None);
        let epoch = metadata_epoch(&mut client).await;

        // The metadata's epoch and the epoch of the batches read so far: records.
        let fetched = fetch_v1(&mut client, epoch, 0, NO_EPOCH, 0).await;
        assert_eq!(fetched.error_code, ErrorCode::None);
        assert_eq!(fetched.leader_epoch, epoch);
        assert_eq!(fetched.diverging_epoch, NO_EPOCH);
        let records = decode_records(&fetched.records);
        assert_eq!(records.len(), 3);
        let batch_epoch = strata_protocol::batch::Batches::new(&fetched.records)
            .next()
            .unwrap()
            .unwrap()
            .header
            .leader_epoch;
        assert_eq!(batch_epoch, epoch, "batches are stamped with the epoch");
        let fetched = fetch_v1(&mut client, epoch, 2, epoch, 0).await;
        assert_eq!(fetched.diverging_epoch, NO_EPOCH);
        assert_eq!(decode_records(&fetched.records).len(), 3);
        let fetched = fetch_v1(&mut client, NO_EPOCH, 0, NO_EPOCH, 0).await;
        assert_eq!(
            (fetched.error_code, fetched.leader_epoch),
            (ErrorCode::None, epoch)
        );

        // A consumer that knows a newer epoch, or read a batch of one, met a newer
        // leader than this broker knows of.
        for (current, last) in [(epoch + 1, NO_EPOCH), (NO_EPOCH, epoch + 1)] {
            let refused = fetch_v1(&mut client, current, 3, last, 0).await;
            assert_eq!(refused.error_code, ErrorCode::UnknownLeaderEpoch);
            assert_eq!(refused.leader_epoch, epoch);
            assert!(refused.records.is_empty());
            assert!(refused.error_code.is_retriable());
        }

        // A consumer that read records of this epoch past the log's end (from a leader
        // whose tail this one lacks) is sent back to where the epoch ends, at once and
        // without records, even by a fetch that would wait.
        let diverged = fetch_v1(&mut client, epoch, 10, epoch, 30_000).await;
        assert_eq!(diverged.error_code, ErrorCode::None);
        assert_eq!(
            (diverged.diverging_epoch, diverged.diverging_end_offset),
            (epoch, 3)
        );
        assert!(diverged.records.is_empty());
        assert_eq!(diverged.high_watermark, 3);

        // Version 0 leaves the epochs out of both directions.
        let fetched = client.fetch("t", 0, 0, 0, 0).await;
        assert_eq!(fetched.error_code, ErrorCode::None);
        assert_eq!(fetched.leader_epoch, NO_EPOCH, "not on the wire");
        assert_eq!(decode_records(&fetched.records).len(), 3);

        server.shutdown().await;
    })
    .await;
}
