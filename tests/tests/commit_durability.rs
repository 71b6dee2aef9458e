//! An OffsetCommit is acknowledged only once the offsets log's durability policy
//! (`group_offsets_durability`, `every_batch` by default) covers it, checked through the
//! storage I/O seam:
//! - a recording `Io` logs every completed fsync of the offsets log's segment, and every
//!   acknowledgement is compared against it;
//! - a simulated power loss right after the acknowledgements loses none of them;
//! - a failed fsync answers a waiting commit with `StorageError` at once, not at its
//!   timeout.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use strata_broker::config::Config;
use strata_broker::partition::Storage;
use strata_broker::server::Server;
use strata_protocol::frame::ResponseResult;
use strata_protocol::messages::ADMIN_COMMIT_EPOCH;
use strata_protocol::{ErrorCode, Response};
use strata_storage::sim::PowerLossIo;
use strata_storage::{Io, RealIo};
use strata_tests::group::commit_request;
use strata_tests::io::{Fault, FaultyIo, RecordingIo, fsync_covered, in_process_config};
use strata_tests::{Client, bounded, data_dir};

const PARTITIONS: u32 = 4;

/// One offsets-log partition, so every commit lands in one known segment file.
fn config(dir: &Path) -> Config {
    Config {
        group_offsets_partitions: 1,
        ..in_process_config(dir)
    }
}

fn offsets_segment(dir: &Path) -> PathBuf {
    dir.join("__consumer_offsets-0")
        .join(format!("{:020}.log", 0))
}

/// An admin commit of `offset` for one partition of topic `t`, answered.
async fn commit(client: &mut Client, partition: u32, offset: u64) -> ResponseResult {
    let request = commit_request("g", "", ADMIN_COMMIT_EPOCH, ("t", partition), offset);
    client.try_call(request).await
}

fn assert_committed(answer: &ResponseResult) {
    let Ok(Response::OffsetCommit(reply)) = answer else {
        panic!("commit failed: {answer:?}");
    };
    assert_eq!(reply.topics[0].partitions[0].error_code, ErrorCode::None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_commit_is_acknowledged_after_an_fsync_covers_it() {
    bounded(async {
        let dir = data_dir();
        let io = RecordingIo::default();
        let synced = Arc::clone(&io.synced);
        let storage = Storage::with_io(Arc::new(io)).unwrap();
        let server = Server::start_with(config(dir.path()), storage)
            .await
            .unwrap();
        let mut client = Client::connect(&server.address.to_string()).await;
        client.create_topic("t", PARTITIONS, &[]).await;
        let segment = offsets_segment(dir.path());
        for round in 0..20u64 {
            assert_committed(&commit(&mut client, (round % 4) as u32, round + 1).await);
            // Nothing appends to the offsets log between the commit and this read.
            let written = std::fs::metadata(&segment).unwrap().len();
            let covered = fsync_covered(&synced, &segment);
            assert!(
                covered.is_some_and(|covered| covered >= written),
                "round {round}: acknowledged with {written} bytes written, fsync covered {covered:?}"
            );
        }
        server.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_loss_loses_no_acknowledged_commit() {
    bounded(async {
        let dir = data_dir();
        let io = PowerLossIo::default();
        io.set_now_ms(RealIo.now_ms());
        let storage = Storage::with_io(Arc::new(io.clone())).unwrap();
        let server = Server::start_with(config(dir.path()), storage)
            .await
            .unwrap();
        let mut client = Client::connect(&server.address.to_string()).await;
        client.create_topic("t", PARTITIONS, &[]).await;
        let mut acknowledged = vec![-1; PARTITIONS as usize];
        for round in 0..40u64 {
            let partition = (round % u64::from(PARTITIONS)) as u32;
            assert_committed(&commit(&mut client, partition, round + 1).await);
            acknowledged[partition as usize] = round as i64 + 1;
        }
        // The power goes off: nothing reaches the disk any more, not even the clean
        // shutdown's fsyncs, and whatever was not fsync'd is lost.
        io.cut_after(0);
        drop(client);
        server.shutdown().await;
        io.power_loss(None);

        let storage = Storage::with_io(Arc::new(io.clone())).unwrap();
        let server = Server::start_with(config(dir.path()), storage)
            .await
            .unwrap();
        let mut client = Client::connect(&server.address.to_string()).await;
        assert_eq!(client.committed("g", "t", PARTITIONS).await, acknowledged);
        server.shutdown().await;
    })
    .await;
}

/// Far below the 60 s a commit waits for its fsync at most.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_answers_the_waiting_commit_at_once() {
    bounded(async {
        let dir = data_dir();
        let io = FaultyIo::new("__consumer_offsets-", Fault::Sync(libc::EIO));
        let failing = Arc::clone(&io.failing);
        let storage = Storage::with_io(Arc::new(io)).unwrap();
        let server = Server::start_with(config(dir.path()), storage)
            .await
            .unwrap();
        let mut client = Client::connect(&server.address.to_string()).await;
        client.create_topic("t", PARTITIONS, &[]).await;
        assert_committed(&commit(&mut client, 0, 1).await);

        failing.store(true, Ordering::SeqCst);
        let answer = tokio::time::timeout(ANSWER_WITHIN, commit(&mut client, 0, 2))
            .await
            .expect("the commit waited for its timeout after the offsets log was poisoned");
        let Err((code, message)) = &answer else {
            panic!("the commit succeeded: {answer:?}");
        };
        assert_eq!(*code, ErrorCode::StorageError, "{message:?}");
        server.shutdown().await;
    })
    .await;
}
